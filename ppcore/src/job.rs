//! What a job is: a named function with serde arguments and output, and the
//! type-erased entry point a node uses to run it from bytes.

use crate::error::{ErrorKind, JobError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A job: a plain function with a stable name. Written with [`job!`](crate::job!).
pub trait Job: Copy + Send + Sync + 'static {
    /// The stable name nodes know the job by (`crate::module::function`).
    const NAME: &'static str;
    /// The argument and result types as written, so that a client and a node
    /// built from different sources can tell they disagree.
    const SIGNATURE: &'static str;
    /// The arguments, as a tuple.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the job returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Runs the job on this thread. Panics are not caught here.
    fn run(args: Self::Args) -> Result<Self::Output, JobError>;
}

/// Runs `J` with `args`, turning a panic into [`ErrorKind::Panicked`].
pub fn run_caught<J: Job>(args: J::Args) -> Result<J::Output, JobError> {
    match catch_unwind(AssertUnwindSafe(|| J::run(args))) {
        Ok(result) => result,
        Err(payload) => Err(JobError::from_panic(payload.as_ref())),
    }
}

/// Encodes a value as MessagePack, the format of arguments and results on the wire.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JobError> {
    rmp_serde::to_vec(value).map_err(|e| JobError::new(ErrorKind::Codec, e.to_string()))
}

/// Decodes a MessagePack value; a mismatch is an [`ErrorKind::Codec`] error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JobError> {
    rmp_serde::from_slice(bytes).map_err(|e| JobError::new(ErrorKind::Codec, e.to_string()))
}

/// The type-erased runner of `J`: arguments in, result out, both as bytes.
pub fn run_erased<J: Job>(args: &[u8]) -> Result<Vec<u8>, JobError> {
    let args = decode::<J::Args>(args)?;
    let output = run_caught::<J>(args)?;
    encode(&output)
}

/// Turns a plain function into a job: a unit struct of the same name that
/// implements [`Job`] and is registered with every [`Registry::linked`](crate::Registry::linked).
///
/// ```
/// ppcore::job! {
///     /// Adds two numbers.
///     pub fn add(a: u64, b: u64) -> u64 { a + b }
/// }
/// assert_eq!(add::call(2, 3), 5);
/// assert_eq!(<add as ppcore::Job>::run((2, 3)), Ok(5));
/// ```
///
/// A function returning `Result<T, E>` with `E: Display` is a fallible job:
/// its output is `T`, and an `Err` becomes [`ErrorKind::Failed`] with the
/// error's text.
#[macro_export]
macro_rules! job {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> Result<$ok:ty, $err:ty> $body:block) => {
        $crate::__job_item!(
            [$(#[$meta])*] $vis $name [$($arg: $ty),*] [$ok] [::core::result::Result<$ok, $err>]
            [|r: ::core::result::Result<$ok, $err>| r.map_err(|e| $crate::JobError::new(
                $crate::ErrorKind::Failed, ::std::string::ToString::to_string(&e)))]
            $body
        );
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> $ret:ty $body:block) => {
        $crate::__job_item!(
            [$(#[$meta])*] $vis $name [$($arg: $ty),*] [$ret] [$ret]
            [|r: $ret| ::core::result::Result::<$ret, $crate::JobError>::Ok(r)]
            $body
        );
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $crate::job!($(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __job_item {
    ([$($meta:tt)*] $vis:vis $name:ident [$($arg:ident : $ty:ty),*] [$out:ty] [$ret:ty]
     [$into:expr] $body:block) => {
        $($meta)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $name;

        impl $name {
            /// Calls the job's function directly on this thread.
            #[allow(clippy::too_many_arguments, clippy::unused_unit)]
            $vis fn call($($arg: $ty),*) -> $ret $body
        }

        impl $crate::Job for $name {
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));
            const SIGNATURE: &'static str =
                concat!("(", stringify!($($ty),*), ") -> ", stringify!($out));
            type Args = ($($ty,)*);
            type Output = $out;
            #[allow(clippy::unused_unit)]
            fn run(args: Self::Args) -> ::core::result::Result<$out, $crate::JobError> {
                let ($($arg,)*) = args;
                ($into)($name::call($($arg),*))
            }
        }

        $crate::inventory::submit! { $crate::JobEntry::of::<$name>() }
    };
}
