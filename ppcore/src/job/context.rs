//! What a running job may learn of where it runs: the cpus and memory it
//! asked for and the named instances it holds (`gpu` 1). Set by whoever
//! runs the job (a local worker, a node's worker thread, or a worker
//! process from its environment) for the length of the run.

use std::cell::RefCell;
use std::sync::Arc;

/// The environment variable a worker process reads its job's instances
/// from (`gpu=0,1;licence=3`).
pub const INSTANCES_ENV: &str = "PP_JOB_INSTANCES";

/// What the running job holds; from `job_context()` inside a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobContext {
    /// The cpus it asked for.
    pub cpus: u32,
    /// The memory it asked for, in bytes (0: none).
    pub memory: u64,
    /// The instances it holds, by resource name: `[("gpu", [1])]`.
    pub instances: Vec<(String, Vec<u32>)>,
}

impl JobContext {
    /// The instances of `name` the job holds (empty if none).
    pub fn instances(&self, name: &str) -> &[u32] {
        self.instances
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&[], |(_, list)| list.as_slice())
    }

    /// The instances as text: `gpu=0,1;licence=3` (what [`INSTANCES_ENV`] holds).
    pub fn instances_text(&self) -> String {
        self.instances
            .iter()
            .map(|(name, list)| {
                let ids: Vec<String> = list.iter().map(u32::to_string).collect();
                format!("{name}={}", ids.join(","))
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Reads [`instances_text`](Self::instances_text)'s form; parts that do
    /// not parse are left out.
    pub fn parse_instances(text: &str) -> Vec<(String, Vec<u32>)> {
        text.split(';')
            .filter_map(|part| {
                let (name, ids) = part.split_once('=')?;
                let ids = ids
                    .split(',')
                    .filter_map(|i| i.trim().parse().ok())
                    .collect();
                Some((name.trim().to_owned(), ids))
            })
            .collect()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<JobContext>>> = const { RefCell::new(None) };
}

/// The context of the job running on this thread: what it asked for and
/// holds. Outside a job, or for a job that asked for nothing but its one
/// cpu, the default (one cpu in a job; nothing held). A worker process
/// reads it from its environment ([`INSTANCES_ENV`]).
pub fn job_context() -> JobContext {
    let here = CURRENT.with(|c| c.borrow().clone());
    match here {
        Some(ctx) => (*ctx).clone(),
        None => match std::env::var(INSTANCES_ENV) {
            Ok(text) => JobContext {
                cpus: 1,
                memory: 0,
                instances: JobContext::parse_instances(&text),
            },
            Err(_) => JobContext {
                cpus: 1,
                ..JobContext::default()
            },
        },
    }
}

/// Runs `f` with `ctx` as this thread's job context (for whoever runs jobs:
/// the client's local pool, a node's workers). The earlier context comes
/// back afterwards, also if `f` panics.
pub fn with_job_context<R>(ctx: Arc<JobContext>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<JobContext>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = old);
        }
    }
    let old = CURRENT.with(|c| c.borrow_mut().replace(ctx));
    let _restore = Restore(old);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_sees_its_instances_only_while_it_runs() {
        let ctx = Arc::new(JobContext {
            cpus: 2,
            memory: 0,
            instances: vec![("gpu".into(), vec![1])],
        });
        let seen = with_job_context(ctx, job_context);
        assert_eq!(seen.instances("gpu"), [1]);
        assert_eq!(seen.cpus, 2);
        assert!(job_context().instances("gpu").is_empty());
    }

    #[test]
    fn instances_survive_the_environment_form() {
        let ctx = JobContext {
            cpus: 1,
            memory: 0,
            instances: vec![("gpu".into(), vec![0, 3]), ("licence".into(), vec![2])],
        };
        let text = ctx.instances_text();
        assert_eq!(text, "gpu=0,3;licence=2");
        assert_eq!(JobContext::parse_instances(&text), ctx.instances);
    }
}
