//! The nodes' side of the world: what ppserver's connection driver does
//! around each node's link (jobs to its workers, finished jobs back in
//! batches, the link's outputs onto the network).

use super::World;
use crate::net::Ev;
use ppcore::wire::DoneJob;
use ppcore::{NodeAction, NodeEvent};
use serde_bytes::ByteBuf;

impl World {
    pub(super) fn node_receives(&mut self, i: usize, conn: u32, bytes: &[u8]) {
        let n = &mut self.nodes[i];
        if self.live[i] != conn || n.conn != conn || n.silent {
            return;
        }
        self.stats.events += 1;
        n.link.handle(NodeEvent::Received(bytes), self.agenda.now());
        self.node_act(i);
    }

    pub(super) fn node_timer(&mut self, i: usize, conn: u32) {
        let now_ns = self.agenda.now_ns();
        let n = &mut self.nodes[i];
        if n.conn != conn || n.armed != Some(now_ns) || n.silent {
            return;
        }
        n.armed = None;
        self.stats.events += 1;
        let now = self.agenda.now();
        if n.link.poll_timeout().is_some_and(|t| t <= now) {
            n.link.handle(NodeEvent::Timer, now);
        }
        self.node_act(i);
    }

    pub(super) fn finished(&mut self, i: usize, conn: u32, id: u64, attempt: u32) {
        let n = &mut self.nodes[i];
        if n.silent {
            return;
        }
        self.stats.events += 1;
        n.idle += 1;
        if n.conn == conn {
            let exec_ns = self.params.exec_ns;
            n.done.push(DoneJob {
                id,
                attempt,
                // The job echoes its arguments: `(id,)` as MessagePack.
                result: Ok(ByteBuf::from(ppcore::encode(&(id,)).unwrap_or_default())),
                exec_ns,
                kept: None,
            });
            if !n.flush_due {
                n.flush_due = true;
                let node = i as u32;
                self.agenda
                    .after(self.params.flush_ns, Ev::Flush { node, conn });
            }
        }
        self.start_workers(i);
    }

    pub(super) fn flush(&mut self, i: usize, conn: u32) {
        let n = &mut self.nodes[i];
        if n.conn != conn || n.silent {
            return;
        }
        self.stats.events += 1;
        n.flush_due = false;
        let done = std::mem::take(&mut n.done);
        n.link.handle(NodeEvent::Finished(done), self.agenda.now());
        self.node_act(i);
    }

    /// Idle workers take the jobs waiting on node `i`.
    pub(super) fn start_workers(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        while n.idle > 0 {
            let Some((id, attempt)) = n.waiting.pop_front() else {
                break;
            };
            n.idle -= 1;
            let run = (self.params.exec_ns as f64 * (0.5 + self.net.unit())) as u64;
            let (node, conn) = (i as u32, n.conn);
            self.agenda.after(
                run,
                Ev::Finished {
                    node,
                    conn,
                    id,
                    attempt,
                },
            );
        }
    }

    /// Carries out what node `i`'s link hands out, and arms its timer.
    pub(super) fn node_act(&mut self, i: usize) {
        let now_ns = self.agenda.now_ns();
        let mut ran = false;
        loop {
            let n = &mut self.nodes[i];
            while let Some(bytes) = n.link.poll_transmit() {
                if self.live[i] == n.conn {
                    let at = self.net.arrival(i, false, now_ns, bytes.len());
                    let (node, conn) = (i as u32, n.conn);
                    self.agenda.at(at, Ev::ToClient { node, conn, bytes });
                }
            }
            match n.link.poll_event() {
                Some(NodeAction::Run(jobs)) => {
                    n.waiting
                        .extend(jobs.into_iter().map(|j| (j.id, j.attempt)));
                    ran = true;
                }
                Some(NodeAction::Closed(_)) => {
                    let conn = n.conn;
                    if self.live[i] == conn {
                        self.live[i] = 0;
                        let at = self.net.arrival(i, false, now_ns, 0);
                        let node = i as u32;
                        self.agenda.at(at, Ev::ClosedToClient { node, conn });
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        if ran {
            self.start_workers(i);
        }
        let n = &mut self.nodes[i];
        if let Some(t) = n.link.poll_timeout() {
            let at = self.agenda.ns_of(t).max(now_ns + 1);
            if n.armed.is_none_or(|a| at < a) {
                n.armed = Some(at);
                let (node, conn) = (i as u32, n.conn);
                self.agenda.at(at, Ev::NodeTimer { node, conn });
            }
        }
    }
}
