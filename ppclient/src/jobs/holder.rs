//! What a job's handle asks of the job behind it (`cell::Holder`): its
//! result cell, who hears of its failure, and its journal record.

use crate::jobs::cell::{Cell, Cloner, Holder};
use crate::jobs::task::{Extra, Task, TypedTask};
use ppcore::{Job, JobError};

impl<J: Job> Holder<J::Output> for TypedTask<J> {
    type Args = J::Args;
    type Extra = Extra;

    fn cell(&self) -> &Cell<J::Output, J::Args, Extra> {
        &self.cell
    }

    fn id(&self) -> u64 {
        Task::id(self)
    }

    fn cloner(&self) -> Cloner<J::Output> {
        J::output_cloner()
    }

    fn failed(&self, err: &JobError) {
        if let Some((id, sink)) = self.keep_to() {
            sink.failed(id, err);
        }
    }

    fn journal(&self, result: &Result<J::Output, JobError>) -> Option<crate::journal::Prepared> {
        if !self.cell.journaled() {
            return None;
        }
        let entry = self.take_journal()?;
        let outcome = match result {
            Ok(value) => {
                let mut bytes = Vec::new();
                J::write_output(value, &mut bytes).ok()?;
                Ok(bytes)
            }
            Err(e) => Err(e),
        };
        entry.prepare((J::NAME, J::SIGNATURE), outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    ppcore::job! { fn nothing() {} }

    /// What a queued job costs the client besides its arguments: the job
    /// (one allocation, a 112-byte malloc chunk at 80 bytes), the handle
    /// the caller keeps (`api::handle`'s test) and the queue's pointer. A
    /// million of them should fit in 150 MB.
    #[test]
    fn a_queued_job_stays_small() {
        assert!(
            std::mem::size_of::<TypedTask<nothing>>() <= 80,
            "a no-op job takes {} bytes",
            std::mem::size_of::<TypedTask<nothing>>()
        );
    }
}
