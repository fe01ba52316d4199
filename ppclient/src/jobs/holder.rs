//! What a job's handle asks of the job behind it (`cell::Holder`): its
//! result cell, who hears of its failure, and its journal record.

use crate::jobs::cell::{Cell, Holder};
use crate::jobs::task::TypedTask;
use ppcore::{Job, JobError};

impl<J: Job> Holder<J::Output> for TypedTask<J> {
    fn cell(&self) -> &Cell<J::Output> {
        &self.cell
    }

    fn failed(&self, err: &JobError) {
        if let Some((id, sink)) = self.keep_to() {
            sink.failed(id, err);
        }
    }

    fn journal(&self, result: &Result<J::Output, JobError>) -> Option<crate::journal::Prepared> {
        if !self.journaled {
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
