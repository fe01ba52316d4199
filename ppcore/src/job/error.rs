//! The error a job's handle resolves with when it did not produce a value.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a job did not produce a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The job's function returned an error.
    Failed,
    /// The job's function panicked.
    Panicked,
    /// The job ran past its timeout.
    TimedOut,
    /// The job was cancelled before it finished.
    Cancelled,
    /// The server shut down before the job ran.
    Shutdown,
    /// No local worker and no node can run a job of this name.
    UnknownJob,
    /// The job's arguments or result could not be encoded or decoded.
    Codec,
    /// The node running the job was lost and the retries ran out.
    NodeLost,
    /// The worker process running the job died (isolation mode).
    Crashed,
    /// No local worker and no node can run the job, and a node that might
    /// have refused this client: a wrong secret or another protocol version.
    /// The message names the node and its reason.
    Auth,
    /// A callback waited on its own job, or on a group (or `wait_all`) that
    /// cannot finish before the callback returns; the wait returns this at
    /// once instead of deadlocking.
    WouldDeadlock,
    /// The result was read before and its type is not `Clone`, so it
    /// cannot be given again (a `Clone` result is given again).
    Taken,
    /// A job whose result this job takes as an argument (a kept result)
    /// failed, or can no longer be made: the message names that job and
    /// its error. (An input that was cancelled cancels this job instead.)
    Dependency,
    /// What the job asks for (`Options::cpus`, `memory`, `resource`,
    /// `tag`) fits no machine the server has or may still get: the message
    /// names the request and the largest offer.
    Unsatisfiable,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Panicked => "panicked",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Shutdown => "server shut down",
            ErrorKind::UnknownJob => "unknown job",
            ErrorKind::Codec => "encoding error",
            ErrorKind::NodeLost => "node lost",
            ErrorKind::Crashed => "worker crashed",
            ErrorKind::Auth => "refused by a node",
            ErrorKind::WouldDeadlock => "would deadlock",
            ErrorKind::Taken => "result already taken",
            ErrorKind::Dependency => "input failed",
            ErrorKind::Unsatisfiable => "request fits no machine",
        };
        f.write_str(s)
    }
}

/// A job's failure: what kind, the message, where it ran and on which attempt.
///
/// Made with [`JobError::new`] (fields may be added: not built by hand).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub struct JobError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The detail: the job's error text, the panic message, the reason.
    pub message: String,
    /// The node the job ran on (`local` for the local pool), if it ran.
    #[serde(default)]
    pub node: Option<String>,
    /// The attempt that failed, starting at 1 (0 if it never started).
    #[serde(default)]
    pub attempt: u32,
}

crate::debug_as_display!(JobError);

impl JobError {
    /// A new error of `kind` with `message`, not yet tied to a node.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        JobError {
            kind,
            message: message.into(),
            node: None,
            attempt: 0,
        }
    }

    /// The same error, noting the node and attempt it happened on.
    pub fn on(mut self, node: &str, attempt: u32) -> Self {
        self.node = Some(node.to_owned());
        self.attempt = attempt;
        self
    }

    /// The same error with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The message carried by a panic payload, as `catch_unwind` returns it.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_owned()
        };
        JobError::new(ErrorKind::Panicked, message)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {}", self.kind)?;
        if let Some(node) = &self.node {
            write!(f, " on {node}")?;
        }
        if self.attempt > 0 {
            write!(f, " (attempt {})", self.attempt)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Makes a type's `Debug` print its `Display` message: an error returned
/// from `fn main() -> Result<(), Box<dyn Error>>` is printed with `Debug`,
/// and a user should read what went wrong and how to mend it, not the
/// error's fields. (`ErrorKind` keeps its derived `Debug`: variant names.)
#[doc(hidden)]
#[macro_export]
macro_rules! debug_as_display {
    ($($ty:ty),* $(,)?) => {
        $(
            impl ::core::fmt::Debug for $ty {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Display::fmt(self, f)
                }
            }
        )*
    };
}
