//! The local pool's side of requests: a job runs through the pool's
//! [`Slots`] (ppcore), which holds what it asked for while it runs; the
//! error of a request that fits no machine.

use crate::jobs::task::{shutdown_error, Task};
use ppcore::resources::{Offer, Request};
use ppcore::slots::{NotRun, Slots};
use ppcore::JobError;
use std::sync::Arc;

/// Runs `task` on this local worker through `slots` (waiting until its
/// request fits), or resolves it with why it cannot run.
pub(crate) fn run_local(
    slots: &Slots,
    task: Arc<dyn Task>,
    stopping: impl Fn() -> bool,
    run: impl FnOnce(Arc<dyn Task>),
) {
    // The job's own count, not its request's: a request is shared by
    // every job submitted with the same options, and its count is touched
    // by the submitting thread too.
    let job = Arc::clone(&task);
    let request = job.request().map(|r| &**r);
    let mut task = Some(task);
    let outcome = slots.run(request, stopping, || {
        if let Some(task) = task.take() {
            run(task);
        }
    });
    let (Err(why), Some(task)) = (outcome, task) else {
        return;
    };
    match why {
        NotRun::Stopped => task.abandon(shutdown_error()),
        NotRun::Never(short) => {
            let asked = request.cloned().unwrap_or_default();
            task.abandon(unsatisfiable(&asked, &slots.offer(), &short));
        }
    }
}

/// The error of a request that fits no machine: the request, the largest
/// offer and what of the request it lacks.
pub(crate) fn unsatisfiable(request: &Request, largest: &Offer, short: &str) -> JobError {
    JobError::new(
        ppcore::ErrorKind::Unsatisfiable,
        format!(
            "request {request} fits no machine: the largest offer is {largest} (short of {short})"
        ),
    )
}
