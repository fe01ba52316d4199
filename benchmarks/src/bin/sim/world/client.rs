//! The client's side of the world: what ppclient's driver of each link
//! does (submit, wake, take jobs, carry out the link's outputs), with
//! the time spent in it counted as the client's.

use super::{Job, Kind, World, KIND, MAX_BATCH};
use crate::net::Ev;
use ppcore::link::{ClientLink, Event, LinkEvent, LinkIo, TransportError};
use ppcore::wire::RunJob;
use ppcore::NodeLink;
use serde_bytes::ByteBuf;
use std::time::Instant;

impl World {
    pub(super) fn submit_batch(&mut self) {
        self.stats.events += 1;
        let left = self.to_submit - self.submitted;
        if left == 0 {
            return;
        }
        if self.client.queue.len() >= self.max_queued {
            self.agenda.after(1_000_000, Ev::Submit);
            return;
        }
        let started = Instant::now();
        let n = left.min(self.batch as u64);
        let first = self.submitted;
        let jobs = (first..first + n).map(|id| Job {
            id,
            attempt: 1,
            // As `submit` does on the caller's thread: the arguments
            // encoded once, kept for retries.
            args: ByteBuf::from(ppcore::encode(&(id,)).unwrap_or_default()),
        });
        self.client.queue.push_all_kind(KIND, jobs);
        self.submitted += n;
        self.wake_drivers();
        self.stats.client += started.elapsed();
        // The caller's thread takes a little while to make the next batch.
        self.agenda.after(10_000, Ev::Submit);
    }

    /// Schedules a turn of each driver the queue woke.
    pub(super) fn wake_drivers(&mut self) {
        let woken = std::mem::take(&mut *ppcore::sync::lock(&self.client.woken));
        for i in woken {
            let c = &mut self.client.ends[i as usize];
            if !c.turn_due {
                c.turn_due = true;
                self.agenda.after(self.params.wake_ns, Ev::Turn { node: i });
            }
        }
    }

    pub(super) fn dialled(&mut self, i: usize) {
        self.stats.events += 1;
        let now = self.agenda.now();
        if self.nodes[i].silent {
            let started = Instant::now();
            let reason = TransportError::Connect("connection timed out".into());
            self.client.ends[i]
                .link
                .handle(Event::ConnectFailed(reason), now);
            self.client_act(i);
            self.stats.client += started.elapsed();
            return;
        }
        // A new connection: the node accepts it with a fresh link.
        self.next_conn += 1;
        let conn = self.next_conn;
        self.live[i] = conn;
        let n = &mut self.nodes[i];
        n.link = NodeLink::new(self.node_config.clone(), self.welcome.clone(), now);
        n.conn = conn;
        n.armed = None;
        n.waiting.clear();
        n.done.clear();
        n.flush_due = false;
        self.node_act(i);
        let started = Instant::now();
        let c = &mut self.client.ends[i];
        c.conn = conn;
        c.link.handle(Event::Connected, now);
        self.client_act(i);
        self.stats.client += started.elapsed();
    }

    pub(super) fn client_receives(&mut self, i: usize, conn: u32, bytes: &[u8]) {
        if self.live[i] != conn || self.client.ends[i].conn != conn {
            return;
        }
        self.stats.events += 1;
        let started = Instant::now();
        let now = self.agenda.now();
        self.client.ends[i].heard_at = self.agenda.now_ns();
        self.client.ends[i].link.handle(Event::Received(bytes), now);
        self.client_act(i);
        self.stats.client += started.elapsed();
        if self.silence_next == Some(i) {
            self.silence_next = None;
            self.nodes[i].silent = true;
        }
    }

    pub(super) fn client_timer(&mut self, i: usize) {
        let now_ns = self.agenda.now_ns();
        let c = &mut self.client.ends[i];
        if c.armed != Some(now_ns) {
            return; // superseded by an earlier one
        }
        c.armed = None;
        self.stats.events += 1;
        let started = Instant::now();
        let now = self.agenda.now();
        if c.link.poll_timeout().is_some_and(|t| t <= now) {
            c.link.handle(Event::Timer, now);
        }
        if c.link.next_sweep() <= now {
            drop(c.link.sweep(now, |_| false, |_| false));
        }
        self.client_act(i);
        self.stats.client += started.elapsed();
    }

    /// What the driver does after anything happened to link `i`: carries
    /// out its outputs, takes jobs while it has room, and arms its timer.
    pub(super) fn client_act(&mut self, i: usize) {
        loop {
            self.client_outputs(i);
            if !self.take_jobs(i) {
                break;
            }
        }
        let now_ns = self.agenda.now_ns();
        let c = &mut self.client.ends[i];
        let sweep = c.link.next_sweep();
        let wake = c.link.poll_timeout().map_or(sweep, |t| t.min(sweep));
        let at = self.agenda.ns_of(wake).max(now_ns + 1);
        if c.armed.is_none_or(|a| at < a) {
            c.armed = Some(at);
            self.agenda.at(at, Ev::ClientTimer { node: i as u32 });
        }
    }

    /// Bytes onto the network, socket commands, then events.
    pub(super) fn client_outputs(&mut self, i: usize) {
        let now_ns = self.agenda.now_ns();
        let now = self.agenda.now();
        loop {
            let c = &mut self.client.ends[i];
            let mut wrote = 0;
            while let Some(bytes) = c.link.poll_transmit() {
                wrote += bytes.len();
                if self.live[i] == c.conn && c.conn != 0 {
                    let at = self.net.arrival(i, true, now_ns, bytes.len());
                    let conn = c.conn;
                    let node = i as u32;
                    self.agenda.at(at, Ev::ToNode { node, conn, bytes });
                }
            }
            if wrote > 0 {
                c.link.wrote(wrote, 0, now);
            }
            if let Some(io) = c.link.poll_io() {
                match io {
                    LinkIo::Connect => {
                        let after = match self.nodes[i].silent {
                            true => self.params.connect_timeout_ns,
                            false => self.net.dial_ns(),
                        };
                        let node = i as u32;
                        self.agenda.after(after, Ev::Dialled { node });
                    }
                    LinkIo::Disconnect => {
                        let conn = c.conn;
                        if self.live[i] == conn {
                            self.live[i] = 0;
                        }
                        c.conn = 0;
                        let at = self.net.arrival(i, true, now_ns, 0);
                        let node = i as u32;
                        self.agenda.at(at, Ev::ClosedToNode { node, conn });
                    }
                }
                continue;
            }
            let Some(event) = c.link.poll_event() else {
                return;
            };
            match event {
                LinkEvent::Up(_) => {
                    self.stats.up += usize::from(!c.up);
                    c.up = true;
                    c.kinds.clear();
                }
                LinkEvent::Down { .. } | LinkEvent::Failed { .. } => {
                    self.stats.up -= usize::from(c.up);
                    c.up = false;
                    c.lost_at = Some(now_ns);
                    self.stats.downs += 1;
                }
                LinkEvent::Done { job, result, .. } => {
                    let fresh = result.is_ok()
                        && self
                            .seen
                            .get_mut(job.id as usize)
                            .is_some_and(|s| !std::mem::replace(s, true));
                    match fresh {
                        true => self.stats.resolved += 1,
                        false => self.stats.duplicates += 1,
                    }
                }
                LinkEvent::Returned { mut job, .. } => {
                    self.stats.returned += 1;
                    job.attempt += 1;
                    self.client.queue.push_front_kind(KIND, job);
                    self.wake_drivers();
                }
                _ => {}
            }
        }
    }

    /// Whether link `i` runs jobs of `kind` (asked once per session).
    pub(super) fn runs(link: &ClientLink<Job>, kinds: &mut Vec<(Kind, bool)>, kind: &Kind) -> bool {
        if let Some((_, yes)) = kinds.iter().find(|(k, _)| k == kind) {
            return *yes;
        }
        let yes = link.can_run(kind.0, kind.1);
        kinds.push((*kind, yes));
        yes
    }

    /// Takes queued jobs within the link's window and hands them to it, as
    /// ppclient's driver does; true if it took any. With room and nothing
    /// to take, the driver's watcher waits for the next push.
    pub(super) fn take_jobs(&mut self, i: usize) -> bool {
        let c = &mut self.client.ends[i];
        let room = c.link.free().min(MAX_BATCH);
        if room == 0 {
            return false;
        }
        let (link, kinds) = (&c.link, &mut c.kinds);
        let jobs = self.client.queue.pop_batch(
            |kind| Self::runs(link, kinds, kind),
            room,
            Some(&c.watcher),
        );
        if jobs.is_empty() {
            return false;
        }
        self.stats.taken += jobs.len() as u64;
        let batch = jobs
            .into_iter()
            .map(|job| {
                let run = RunJob {
                    id: job.id,
                    attempt: job.attempt,
                    name: KIND.0.to_owned(),
                    args: job.args.clone(),
                    program: None,
                    shared: Vec::new(),
                    keep: None,
                    journal: None,
                    request: None,
                };
                (run, job)
            })
            .collect();
        c.link.handle(Event::Submit(batch), self.agenda.now());
        true
    }
}
