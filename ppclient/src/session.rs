//! One live connection to a node: the feeder that sends it jobs from the
//! shared queue within its window, and the reader that resolves them.

use crate::core::Core;
use crate::remote::{lock, JobSet, Link, NodeState};
use crate::task::Task;
use crate::timer::Expire;
use ppcore::wire::{batches_by_size, ClientMsg, NodeMsg, RunJob};
use ppcore::{encode_frame, FrameReader, Ledger};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Largest batch of jobs sent in one frame.
const MAX_BATCH: usize = 1024;
/// How often the feeder looks at its flags when there is nothing to send.
const TICK: Duration = Duration::from_millis(50);

/// One live connection to a node.
pub(crate) struct Session {
    writer: Mutex<TcpStream>,
    ledger: Mutex<Ledger<Arc<dyn Task>>>,
    space: Condvar,
    jobs: JobSet,
    dead: AtomicBool,
    draining: AtomicBool,
    /// Milliseconds since `born` when the node was last heard from.
    heard_ms: AtomicU64,
    born: Instant,
    /// Traffic and round trip, for the dashboard.
    pub(crate) meter: crate::dashboard::LinkMeter,
}

impl Session {
    pub(crate) fn new(
        writer: TcpStream,
        workers: usize,
        max_prefetch: usize,
        jobs: JobSet,
    ) -> Self {
        Session {
            writer: Mutex::new(writer),
            ledger: Mutex::new(Ledger::new(workers, max_prefetch)),
            space: Condvar::new(),
            jobs,
            dead: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            heard_ms: AtomicU64::new(0),
            born: Instant::now(),
            meter: Default::default(),
        }
    }

    /// Jobs sent and not answered yet.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.ledger).len()
    }

    /// Takes back every job in flight: the connection is gone.
    pub(crate) fn drain(&self) -> Vec<Arc<dyn Task>> {
        lock(&self.ledger).drain()
    }

    pub(crate) fn send(&self, msg: &ClientMsg) -> bool {
        let Ok(frame) = encode_frame(msg) else {
            return false;
        };
        self.meter.sent(frame.len());
        let mut w = lock(&self.writer);
        if w.write_all(&frame).is_err() {
            drop(w);
            self.kill();
            return false;
        }
        true
    }

    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        let _ = lock(&self.writer).shutdown(Shutdown::Both);
        self.space.notify_all();
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn heard(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.heard_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.heard_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(heard)
    }
}

/// Pulls jobs from the shared queue while the node has room, sends them in
/// batches, and keeps the heartbeat.
pub(crate) fn feed(core: &Arc<Core>, link: &Link, session: &Session) {
    let heartbeat = core.settings.heartbeat;
    let mut pinged = Instant::now();
    let mut swept = Instant::now();
    let mut seq = 0u64;
    let mut batch: Vec<Arc<dyn Task>> = Vec::new();
    loop {
        if session.is_dead() || core.stopped() {
            return;
        }
        if pinged.elapsed() >= heartbeat {
            seq += 1;
            session.send(&ClientMsg::Ping(seq));
            session.meter.ping(seq);
            pinged = Instant::now();
        }
        if swept.elapsed() >= TICK {
            cancel_ended(session);
            swept = Instant::now();
        }
        if session.silent_for() > heartbeat * 3 {
            tracing::warn!(node = %link.name, "node silent for {:?}: lost", session.silent_for());
            return;
        }
        if session.draining.load(Ordering::Acquire) {
            core.sleep(TICK);
            continue;
        }
        let free = {
            let ledger = lock(&session.ledger);
            let (ledger, _) = session
                .space
                .wait_timeout_while(ledger, TICK, |l| l.free() == 0 && !session.is_dead())
                .unwrap_or_else(|e| e.into_inner());
            ledger.free()
        };
        if free == 0 {
            continue;
        }
        let Some(first) = core.queue.pop_timeout(TICK) else {
            continue;
        };
        batch.push(first);
        while batch.len() < free.min(MAX_BATCH) {
            match core.queue.try_pop() {
                Some(t) => batch.push(t),
                None => break,
            }
        }
        send_batch(core, session, &mut batch);
    }
}

/// Jobs that ended while on the node (timed out, cancelled) leave the
/// window, and the node is told to stop them.
fn cancel_ended(session: &Session) {
    let gone = lock(&session.ledger).remove_where(|task| task.ended());
    if gone.is_empty() {
        return;
    }
    session.space.notify_one();
    for (id, _) in gone {
        session.send(&ClientMsg::Cancel { id });
    }
}

fn send_batch(core: &Arc<Core>, session: &Session, batch: &mut Vec<Arc<dyn Task>>) {
    let mut run = Vec::with_capacity(batch.len());
    let mut passed = 0;
    {
        let mut ledger = lock(&session.ledger);
        for task in batch.drain(..) {
            let (name, signature) = task.job();
            if !session
                .jobs
                .contains(&(name.to_owned(), signature.to_owned()))
            {
                passed += 1;
                core.pass_on(task);
                continue;
            }
            match task.dispatch(&core.ctx) {
                Ok(d) => {
                    core.ctx
                        .arm(Arc::clone(&task) as Arc<dyn Expire>, task.timeout());
                    run.push(RunJob {
                        id: task.id(),
                        attempt: d.attempt,
                        name: name.to_owned(),
                        args: d.args,
                    });
                    ledger.sent(task.id(), d.attempt, task);
                }
                Err(Some(e)) => task.abandon(e),
                Err(None) => {} // cancelled while queued
            }
        }
    }
    if !run.is_empty() {
        let budget = core.settings.max_frame;
        for part in batches_by_size(run, |j| j.args.len(), budget) {
            session.send(&ClientMsg::Run(part));
        }
    } else if passed > 0 {
        // Only jobs this node cannot run are queued: let others take them.
        core.sleep(Duration::from_millis(1));
    }
}

/// Reads the node's messages until the connection ends; true if the node
/// said goodbye (a stop, not a loss).
pub(crate) fn read_loop(
    core: &Arc<Core>,
    link: &Link,
    session: &Session,
    mut reader: FrameReader<TcpStream>,
) -> bool {
    loop {
        let msg = match reader.read::<NodeMsg>() {
            Ok(Some(msg)) => msg,
            Ok(None) => return false,
            Err(e) => {
                if !session.is_dead() {
                    tracing::info!(node = %link.name, "connection ended: {e}");
                }
                session.kill();
                return false;
            }
        };
        session.heard();
        session.meter.received(reader.take_bytes_read());
        match msg {
            NodeMsg::Done(results) => {
                let mut finished = Vec::with_capacity(results.len());
                {
                    let mut ledger = lock(&session.ledger);
                    for d in results {
                        let exec = Duration::from_nanos(d.exec_ns);
                        if let Some(task) = ledger.done(d.id, d.attempt, exec) {
                            finished.push((task, d.result, exec));
                        }
                    }
                }
                session.space.notify_one();
                for (task, result, exec) in finished {
                    link.counters.record(exec, result.is_err());
                    let dash = core.ctx.dash.get();
                    dash.inspect(|d| {
                        d.remote_end(&link.name, task.job().0, exec, result.as_ref().err())
                    });
                    if let Some(again) = task.complete(result, &link.name) {
                        dash.inspect(|d| d.rerun(&link.name));
                        core.requeue(again);
                    }
                }
            }
            NodeMsg::Returned(jobs) => {
                let back: Vec<_> = {
                    let mut ledger = lock(&session.ledger);
                    jobs.into_iter()
                        .filter_map(|(id, a)| ledger.take(id, a))
                        .collect()
                };
                session.space.notify_one();
                for task in back {
                    if let Some(task) = task.retry(&link.name, false) {
                        core.ctx.dash.get().inspect(|d| d.rerun(&link.name));
                        core.requeue(task);
                    }
                }
            }
            NodeMsg::Draining => {
                tracing::info!(node = %link.name, "node draining");
                session.draining.store(true, Ordering::Release);
                link.set_state(NodeState::Draining);
            }
            NodeMsg::Goodbye => {
                session.kill();
                return true;
            }
            NodeMsg::Reject { reason } => {
                tracing::warn!(node = %link.name, "node closed the connection: {reason}");
                session.kill();
                return false;
            }
            NodeMsg::Pong(seq) => session.meter.pong(seq),
            NodeMsg::Status(_) => {}
            NodeMsg::Challenge { .. } | NodeMsg::Welcome { .. } => {
                tracing::warn!(node = %link.name, "handshake message after the handshake");
                session.kill();
                return false;
            }
        }
    }
}
