//! The node's rule for the shared values jobs name, as plain state: a job
//! runs with the values it names once the node holds them all; a job that
//! names a value the node lacks goes back unrun and the value is asked
//! for; one that names a value the node refused over `--shared-max` fails
//! with that reason (asking again would not help) until the client sends
//! the value again or drops it. Where the values are kept (the node's
//! store, under its lock) is the driver's: it is asked through `lookup`.

use crate::job::error::{ErrorKind, JobError};
use crate::job::shared::{OverSharedMax, SharedId};
use crate::wire::messages::{DoneJob, RunJob};
use std::collections::HashMap;

/// Jobs sorted by what the node holds of the values they name.
#[derive(Debug)]
pub(crate) struct Resolved<V> {
    /// Jobs to run, with the values they name.
    pub(crate) ready: Vec<(RunJob, Vec<V>)>,
    /// Jobs that name a value refused over `--shared-max`: failed.
    pub(crate) failed: Vec<DoneJob>,
    /// Values the node lacks (sorted, once each): to ask for.
    pub(crate) need: Vec<SharedId>,
    /// Jobs that name them: handed back unrun.
    pub(crate) back: Vec<(u64, u32)>,
}

/// Shared values of this client the node refused for `--shared-max`.
#[derive(Debug, Default)]
pub(crate) struct SharedRefusals {
    over: HashMap<SharedId, OverSharedMax>,
}

impl SharedRefusals {
    /// The node's store answered a value of the client: kept, or refused.
    pub(crate) fn stored(&mut self, id: SharedId, outcome: Result<(), OverSharedMax>) {
        match outcome {
            Ok(()) => self.over.remove(&id),
            Err(over) => self.over.insert(id, over),
        };
    }

    /// The client is done with these values: their refusals go too.
    pub(crate) fn unshared(&mut self, ids: &[SharedId]) {
        self.over.retain(|id, _| !ids.contains(id));
    }

    /// Sorts `jobs`: `lookup` gives the values of ids this connection holds
    /// on the node, or the ids it lacks; failures name `node` (as a job's
    /// error does).
    pub(crate) fn resolve<V>(
        &self,
        jobs: Vec<RunJob>,
        node: &str,
        mut lookup: impl FnMut(&[SharedId]) -> Result<Vec<V>, Vec<SharedId>>,
    ) -> Resolved<V> {
        let mut out = Resolved {
            ready: Vec::with_capacity(jobs.len()),
            failed: Vec::new(),
            need: Vec::new(),
            back: Vec::new(),
        };
        for job in jobs {
            if job.shared.is_empty() {
                out.ready.push((job, Vec::new()));
                continue;
            }
            if let Some(over) = job.shared.iter().find_map(|id| self.over.get(id)) {
                out.failed.push(DoneJob {
                    id: job.id,
                    attempt: job.attempt,
                    result: Err(
                        JobError::new(ErrorKind::Codec, over.to_string()).on(node, job.attempt)
                    ),
                    exec_ns: 0,
                    kept: None,
                });
                continue;
            }
            match lookup(&job.shared) {
                Ok(values) => out.ready.push((job, values)),
                Err(missing) => {
                    out.need.extend(missing);
                    out.back.push((job.id, job.attempt));
                }
            }
        }
        out.need.sort_unstable();
        out.need.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::ByteBuf;

    fn job(id: u64, shared: &[SharedId]) -> RunJob {
        RunJob {
            id,
            attempt: 1,
            name: "j".into(),
            args: ByteBuf::new(),
            program: None,
            shared: shared.to_vec(),
            keep: None,
            journal: None,
            request: None,
        }
    }

    #[test]
    fn jobs_run_with_values_held_go_back_for_values_lacking_and_fail_for_values_refused() {
        let (held, lacking, big) = (SharedId::of(b"a"), SharedId::of(b"b"), SharedId::of(b"c"));
        let mut refusals = SharedRefusals::default();
        let over = OverSharedMax { len: 10, max: 5 };
        refusals.stored(big, Err(over.clone()));
        let lookup = |ids: &[SharedId]| match ids.contains(&lacking) {
            true => Err(vec![lacking]),
            false => Ok(ids.iter().map(|_| "value").collect()),
        };
        let jobs = vec![
            job(1, &[]),
            job(2, &[held]),
            job(3, &[held, lacking]),
            job(4, &[lacking]),
            job(5, &[big]),
        ];
        let r = refusals.resolve(jobs, "n1", lookup);
        let ready: Vec<_> = r.ready.iter().map(|(j, v)| (j.id, v.len())).collect();
        assert_eq!(ready, vec![(1, 0), (2, 1)]);
        assert_eq!(r.need, vec![lacking], "asked for once");
        assert_eq!(r.back, vec![(3, 1), (4, 1)]);
        let err = r.failed[0].result.as_ref().unwrap_err();
        assert_eq!((r.failed[0].id, err.kind), (5, ErrorKind::Codec));
        assert!(err.message.contains(&over.to_string()), "{err}");
        assert_eq!(err.node.as_deref(), Some("n1"));
    }

    #[test]
    fn a_refusal_ends_when_the_value_is_kept_or_dropped() {
        let (a, b) = (SharedId::of(b"a"), SharedId::of(b"b"));
        let mut refusals = SharedRefusals::default();
        refusals.stored(a, Err(OverSharedMax { len: 10, max: 5 }));
        refusals.stored(b, Err(OverSharedMax { len: 10, max: 5 }));
        refusals.stored(a, Ok(()));
        refusals.unshared(&[b]);
        let r = refusals.resolve(vec![job(1, &[a]), job(2, &[b])], "n", |ids| {
            Ok::<_, Vec<SharedId>>(ids.to_vec())
        });
        assert!(r.failed.is_empty());
        assert_eq!(r.ready.len(), 2);
    }
}
