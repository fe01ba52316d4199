//! The facts the dashboard shows, as JSON: what `/api/status` returns and
//! what each server-sent event carries. Every text from a peer or a job
//! travels as a JSON string (data), and the page puts it in with `textContent`.

use crate::cluster::node::NodeState;
use crate::cluster::state::Core;
use crate::jobs::recorder::LOCAL;
use crate::jobs::recorder::{Cursor, InUse, Recorder, TaskRecord};
use crate::jobs::tracker::Counts;
use ppcore::sync::lock;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Everything the page shows.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// Seconds since the server started.
    pub(crate) elapsed_s: f64,
    /// Whether this event replaces the page's tasks (else it adds to them).
    pub(crate) full: bool,
    pub(crate) totals: Totals,
    pub(crate) nodes: Vec<NodeView>,
    pub(crate) groups: Vec<GroupView>,
    pub(crate) errors: Vec<ErrorView>,
    pub(crate) tasks: Vec<TaskView>,
}

/// Server-wide counts, as in `Server::stats`.
#[derive(Debug, Serialize)]
pub(crate) struct Totals {
    /// `submitted`, `succeeded`, `failed`, `cancelled`, `timed_out` and
    /// `shut_down`, as keys of their own.
    #[serde(flatten)]
    pub(crate) counts: Counts,
    pub(crate) retried: u64,
    /// Jobs that ran (each counted once) and jobs resolved from the
    /// journal without running, as in `Stats`.
    pub(crate) ran: u64,
    pub(crate) from_journal: u64,
    pub(crate) reclaimed: u64,
    pub(crate) active: u64,
    pub(crate) queue_wait_s: f64,
    /// Jobs held until the kept results they take are ready.
    pub(crate) held: u64,
    /// Bytes of kept results held in this process (the local pool's, and
    /// those a node sent back over its `--max-memory`).
    pub(crate) kept_bytes: u64,
}

/// One place jobs run: the local pool or a node.
#[derive(Debug, Serialize)]
pub(crate) struct NodeView {
    pub(crate) name: String,
    /// What it offers jobs (`cpus=4 memory=15.6 GiB gpu=2`), once known.
    pub(crate) offer: Option<String>,
    /// What the jobs running there hold of it now (`cpus=2 gpu=1`).
    pub(crate) in_use: Option<String>,
    /// `up`, `connecting`, `draining`, `down` or `failed`.
    pub(crate) state: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) workers: usize,
    /// Jobs running there now (on a node: sent and not answered yet).
    pub(crate) busy: u64,
    pub(crate) done: u64,
    pub(crate) failed: u64,
    pub(crate) rerun: u64,
    pub(crate) job_time_s: f64,
    /// The last heartbeat's round trip (nodes only).
    pub(crate) rtt_ms: Option<f64>,
    /// Bytes read from and written to the node since the server started.
    pub(crate) bytes_in: Option<u64>,
    pub(crate) bytes_out: Option<u64>,
    /// Job results kept there (`Options::keep`).
    pub(crate) kept: u64,
    /// Jobs sent there before their inputs were ready (started there
    /// without a round trip to the client).
    pub(crate) chained: u64,
    /// Jobs run there again to make a kept result lost with its node.
    pub(crate) recomputed: u64,
    /// Kept values moved there node to node, and their bytes.
    pub(crate) transfers: u64,
    pub(crate) transfer_bytes: u64,
    /// Kept values brought from there to the client.
    pub(crate) fetched: u64,
}

/// A group's progress; the first row, `all jobs`, is every job.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct GroupView {
    pub(crate) name: String,
    pub(crate) total: u64,
    pub(crate) done: u64,
    /// Seconds left at the rate so far, once something is done.
    pub(crate) eta_s: Option<f64>,
}

/// One recent error.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorView {
    pub(crate) at_s: f64,
    pub(crate) job: &'static str,
    pub(crate) node: String,
    pub(crate) kind: String,
    pub(crate) message: String,
}

/// One finished task.
#[derive(Debug, Serialize)]
pub(crate) struct TaskView {
    pub(crate) job: &'static str,
    pub(crate) node: String,
    pub(crate) start_s: f64,
    pub(crate) end_s: f64,
    pub(crate) failed: bool,
}

/// The progress of `done` of `total` jobs after `elapsed`, with the time
/// left at the rate so far.
pub(crate) fn progress(name: String, total: u64, done: u64, elapsed: Duration) -> GroupView {
    let done = done.min(total);
    let eta_s = (done > 0 && done < total).then(|| {
        let per_job = elapsed.as_secs_f64() / done as f64;
        per_job * (total - done) as f64
    });
    GroupView {
        name,
        total,
        done,
        eta_s: eta_s.or((total > 0 && done == total).then_some(0.0)),
    }
}

/// What jobs hold, as the dashboard shows it: `cpus=2 memory=1.0 GiB
/// gpu=1 licence=0.5` (memory and resources only where some is held).
fn in_use_text((cpus, memory, named): InUse) -> String {
    let mut text = format!("cpus={cpus}");
    if memory > 0 {
        text.push_str(&format!(
            " memory={}",
            ppcore::resources::bytes_text(memory)
        ));
    }
    for (name, millis) in named.into_iter().filter(|(_, m)| *m > 0) {
        let amount = format!("{:.3}", millis as f64 / 1000.0);
        let amount = amount.trim_end_matches('0').trim_end_matches('.');
        text.push_str(&format!(" {name}={amount}"));
    }
    text
}

fn state_name(state: &NodeState) -> (&'static str, Option<String>) {
    match state {
        NodeState::Connecting => ("connecting", None),
        NodeState::Up { .. } => ("up", None),
        NodeState::Draining => ("draining", None),
        NodeState::Down { reason } => ("down", Some(reason.to_string())),
        NodeState::Failed { reason } => ("failed", Some(reason.to_string())),
    }
}

/// The facts now; tasks recorded after `cursor` (at most `max_tasks`).
pub(crate) fn status(
    core: &Core,
    rec: &Recorder,
    cursor: &mut Cursor,
    max_tasks: usize,
    full: bool,
) -> Status {
    let elapsed = rec.elapsed();
    let tracker = &core.tracker;
    let counts = tracker.counts();
    let totals = Totals {
        counts,
        retried: tracker.retried.load(Ordering::Relaxed),
        ran: tracker.ran(),
        from_journal: tracker.from_journal.load(Ordering::Relaxed),
        reclaimed: tracker.reclaimed.load(Ordering::Relaxed),
        active: counts.unresolved(),
        queue_wait_s: tracker.mean_queue_wait().as_secs_f64(),
        held: lock(&core.values.dir).held() as u64,
        kept_bytes: core.values.bytes_here(),
    };
    let ncpus = core.ncpus.load(Ordering::Acquire);
    let local = core.ctx.local.snapshot(LOCAL, ncpus);
    let mut nodes = vec![NodeView {
        name: LOCAL.to_owned(),
        offer: (ncpus > 0).then(|| core.slots.offer().to_string()),
        in_use: (ncpus > 0).then(|| in_use_text(core.slots.in_use())),
        state: "up",
        reason: None,
        workers: ncpus,
        busy: rec.local_busy(),
        done: local.jobs,
        failed: local.failed,
        rerun: 0,
        job_time_s: local.job_time.as_secs_f64(),
        rtt_ms: None,
        bytes_in: None,
        bytes_out: None,
        kept: local.kept,
        chained: local.chained,
        recomputed: local.recomputed,
        transfers: 0,
        transfer_bytes: 0,
        fetched: 0,
    }];
    let queued = core.queued_kinds();
    for link in core.links() {
        let view = link.view();
        let stats = link.counters.snapshot(&link.name, view.workers());
        let (state, reason) = state_name(&view.state);
        let reason = reason.or_else(|| view.why_unused(&queued));
        let (bytes_in, bytes_out) = link.meter.bytes();
        nodes.push(NodeView {
            name: link.name.clone(),
            offer: view.offer.as_ref().map(|o| o.to_string()),
            in_use: link.meter.in_use().map(in_use_text),
            state,
            reason,
            workers: stats.workers,
            busy: link.meter.in_flight(),
            done: stats.jobs,
            failed: stats.failed,
            rerun: rec.reruns(&link.name),
            job_time_s: stats.job_time.as_secs_f64(),
            rtt_ms: link.meter.rtt().map(|d| d.as_secs_f64() * 1e3),
            bytes_in: Some(bytes_in),
            bytes_out: Some(bytes_out),
            kept: stats.kept,
            chained: stats.chained,
            recomputed: stats.recomputed,
            transfers: stats.transfers,
            transfer_bytes: stats.transfer_bytes,
            fetched: stats.fetched,
        });
    }
    let mut groups = vec![progress(
        "all jobs".into(),
        counts.submitted,
        counts.ended(),
        elapsed,
    )];
    for (name, g) in rec.groups() {
        let pending = g.pending.get() as u64;
        let since = elapsed.saturating_sub(Duration::from_micros(g.first_us));
        groups.push(progress(
            name,
            g.total,
            g.total.saturating_sub(pending),
            since,
        ));
    }
    let places = rec.places();
    let place = |i: u32| {
        places
            .get(i as usize)
            .map_or_else(|| "?".to_owned(), |p| p.to_string())
    };
    let errors = rec
        .errors()
        .into_iter()
        .map(|e| ErrorView {
            at_s: e.at_us as f64 / 1e6,
            job: e.job,
            node: place(e.place),
            kind: e.kind,
            message: e.message,
        })
        .collect();
    let tasks = rec
        .tasks_since(cursor, max_tasks)
        .into_iter()
        .map(|t: TaskRecord| TaskView {
            job: t.job,
            node: place(t.place),
            start_s: t.start_us as f64 / 1e6,
            end_s: t.end_us as f64 / 1e6,
            failed: t.failed,
        })
        .collect();
    Status {
        elapsed_s: elapsed.as_secs_f64(),
        full,
        totals,
        nodes,
        groups,
        errors,
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_and_eta() {
        let g = progress("g".into(), 10, 4, Duration::from_secs(2));
        assert_eq!((g.total, g.done), (10, 4));
        assert_eq!(g.eta_s, Some(3.0));
        assert_eq!(progress("g".into(), 0, 0, Duration::ZERO).eta_s, None);
        assert_eq!(
            progress("g".into(), 5, 0, Duration::from_secs(1)).eta_s,
            None
        );
        assert_eq!(
            progress("g".into(), 5, 7, Duration::from_secs(1)).eta_s,
            Some(0.0)
        );
    }

    #[test]
    fn what_jobs_hold_reads_as_an_offer_does() {
        let held = (
            2,
            1 << 30,
            vec![("gpu".into(), 1000), ("licence".into(), 500)],
        );
        assert_eq!(in_use_text(held), "cpus=2 memory=1.0 GiB gpu=1 licence=0.5");
        let idle = (0, 0, vec![("gpu".into(), 0)]);
        assert_eq!(in_use_text(idle), "cpus=0");
    }

    #[test]
    fn peer_text_is_data_in_json() {
        let e = ErrorView {
            at_s: 0.0,
            job: "j",
            node: "<img src=x onerror=alert(1)>".into(),
            kind: "Failed".into(),
            message: "</script><script>alert(1)</script>\"".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["message"], "</script><script>alert(1)</script>\"");
        assert_eq!(back["node"], "<img src=x onerror=alert(1)>");
    }
}
