//! The `srun` steps a client started, each watched on a thread of its own
//! until it ends.

use ppcore::sync::lock;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The `srun` steps a client started, watched until they end.
#[derive(Default)]
pub(crate) struct Steps {
    /// Per step: its pid and, once it ended, how.
    state: Mutex<Vec<(u32, Option<ExitStatus>)>>,
    cv: Condvar,
}

impl Steps {
    /// Watches `child` on a thread of its own until it exits; then calls
    /// `ended` (which wakes those who wait for the nodes to join).
    pub(crate) fn watch(
        self: &Arc<Self>,
        mut child: Child,
        ended: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let i = {
            let mut state = lock(&self.state);
            state.push((child.id(), None));
            state.len() - 1
        };
        let steps = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("pp-slurm-step".into())
            .spawn(move || {
                let status = child.wait().ok();
                {
                    let mut state = lock(&steps.state);
                    state[i].1 = Some(status.unwrap_or_else(|| {
                        use std::os::unix::process::ExitStatusExt;
                        ExitStatus::from_raw(1 << 8)
                    }));
                    steps.cv.notify_all();
                }
                ended();
            });
        spawned.map(|_| ())
    }

    /// How the steps that ended so far ended.
    pub(crate) fn ended(&self) -> Vec<ExitStatus> {
        lock(&self.state).iter().filter_map(|(_, s)| *s).collect()
    }

    /// Sends `sig` (`-TERM`) to every `srun` still running.
    pub(crate) fn signal(&self, sig: &str) {
        let pids: Vec<u32> = lock(&self.state)
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in pids {
            let _ = Command::new("kill")
                .args([sig, &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Waits up to `limit` for every `srun` to end; true if they all did.
    pub(crate) fn wait(&self, limit: Duration) -> bool {
        let deadline = ppcore::limits::deadline(Instant::now(), limit);
        let mut state = lock(&self.state);
        while state.iter().any(|(_, s)| s.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .cv
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}
