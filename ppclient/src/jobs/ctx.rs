//! What running a job needs besides the job itself: the local pool's
//! counters, the timeout timer (started on first use), the stop flag, the
//! payload limit and the dashboard's recorder.

use crate::jobs::timer::{Expire, Timer};
use ppcore::NodeCounters;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What running a job needs besides the job itself.
pub(crate) struct RunCtx {
    pub(crate) local: NodeCounters,
    timer: OnceLock<Timer>,
    stopping: AtomicBool,
    /// The largest arguments a node can be sent.
    pub(crate) max_payload: usize,
    /// The dashboard's recorder, when there is a dashboard.
    pub(crate) dash: OnceLock<Arc<crate::jobs::recorder::Recorder>>,
}

impl RunCtx {
    pub(crate) fn new(max_payload: u64) -> Self {
        RunCtx {
            local: NodeCounters::default(),
            timer: OnceLock::new(),
            stopping: AtomicBool::new(false),
            max_payload: usize::try_from(max_payload).unwrap_or(usize::MAX),
            dash: OnceLock::new(),
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Arranges for `job` to time out after `timeout`, if it has one. The
    /// timer thread is started on first use: most programs never set a timeout.
    pub(crate) fn arm(&self, job: Arc<dyn Expire>, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return;
        };
        let timer = match self.timer.get() {
            Some(t) => t,
            None => match Timer::start() {
                Ok(t) => self.timer.get_or_init(|| t),
                Err(_) => return,
            },
        };
        timer.schedule(
            ppcore::limits::deadline(Instant::now(), timeout),
            Arc::downgrade(&job),
        );
    }
}
