//! The writing half of one connection, shared by the connection's reader and
//! every worker that finishes one of its jobs.
//!
//! Results are combined: a worker that finds a write under way leaves its
//! result in the pending batch, and the writer sends it with the next frame.
//! One job alone is written at once; many jobs at once go out in few frames.

use ppcore::encode_frame;
use ppcore::wire::{batches_by_size, max_payload, DoneJob, NodeMsg};
use ppcore::{ErrorKind, JobError};
use std::collections::HashSet;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct Pending {
    done: Vec<DoneJob>,
    writing: bool,
}

pub(crate) struct Out {
    stream: Mutex<TcpStream>,
    pending: Mutex<Pending>,
    closed: AtomicBool,
    /// Jobs of this connection queued or running here.
    active: AtomicU64,
    /// Cancelled jobs not started yet; emptied whenever `active` reaches 0,
    /// so late cancels cannot pile up.
    cancelled: Mutex<HashSet<u64>>,
    any_cancelled: AtomicBool,
    peer: String,
    max_frame: usize,
    /// Bytes written (for metrics).
    sent: AtomicU64,
}

impl Out {
    pub(crate) fn new(stream: TcpStream, peer: String, max_frame: usize) -> Self {
        Out {
            stream: Mutex::new(stream),
            pending: Mutex::new(Pending::default()),
            closed: AtomicBool::new(false),
            active: AtomicU64::new(0),
            cancelled: Mutex::new(HashSet::new()),
            any_cancelled: AtomicBool::new(false),
            peer,
            max_frame,
            sent: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the connection both ways; the reader sees the end at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(s) = self.stream.lock() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// A job of this connection was queued.
    pub(crate) fn begin(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    /// A job of this connection ended (ran, skipped or returned).
    pub(crate) fn end(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1
            && self.any_cancelled.swap(false, Ordering::AcqRel)
        {
            self.cancelled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }

    /// Bytes written so far.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Notes that the client cancelled job `id`.
    pub(crate) fn cancel(&self, id: u64) {
        if self.active.load(Ordering::Acquire) == 0 {
            return; // nothing of ours is here: the job is done already
        }
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.any_cancelled.store(true, Ordering::Release);
    }

    /// Whether job `id` was cancelled (and forgets it: each id runs once).
    pub(crate) fn cancelled(&self, id: u64) -> bool {
        if !self.any_cancelled.load(Ordering::Acquire) {
            return false;
        }
        let mut set = self.cancelled.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&id)
    }

    /// Sends one message now.
    pub(crate) fn send(&self, msg: &NodeMsg) {
        match encode_frame(msg) {
            Ok(frame) => self.write(&frame),
            Err(e) => tracing::error!(peer = %self.peer, "cannot encode a message: {e}"),
        }
    }

    /// Sends a job's result, batched with whatever else finished meanwhile.
    pub(crate) fn send_done(&self, mut done: DoneJob) {
        let max = max_payload(self.max_frame);
        if let Ok(bytes) = &done.result {
            if bytes.len() > max {
                let message = format!(
                    "result of {} bytes is over the {max}-byte frame limit",
                    bytes.len()
                );
                done.result = Err(JobError::new(ErrorKind::Codec, message));
            }
        }
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.done.push(done);
            if p.writing {
                return; // the writer in charge takes it along
            }
            p.writing = true;
        }
        loop {
            let batch = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if p.done.is_empty() {
                    p.writing = false;
                    return;
                }
                std::mem::take(&mut p.done)
            };
            let size = |d: &DoneJob| d.result.as_ref().map_or(0, |b| b.len());
            for part in batches_by_size(batch, size, self.max_frame) {
                self.send(&NodeMsg::Done(part));
            }
        }
    }

    fn write(&self, frame: &[u8]) {
        if self.is_closed() {
            return;
        }
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        self.sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
        if let Err(e) = stream.write_all(frame) {
            tracing::debug!(peer = %self.peer, "write failed, closing: {e}");
            self.closed.store(true, Ordering::Release);
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}
