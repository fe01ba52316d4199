//! The writing half of one connection, shared by the connection's reader and
//! every worker that finishes one of its jobs.
//!
//! Results are combined: a worker that finds a write under way leaves its
//! result in the pending batch, and the writer sends it with the next frame.
//! One job alone is written at once; many jobs at once go out in few frames.

use ppcore::encode_frame;
use ppcore::wire::{DoneJob, NodeMsg};
use std::collections::HashSet;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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
    cancelled: Mutex<HashSet<u64>>,
    peer: String,
}

impl Out {
    pub(crate) fn new(stream: TcpStream, peer: String) -> Self {
        Out {
            stream: Mutex::new(stream),
            pending: Mutex::new(Pending::default()),
            closed: AtomicBool::new(false),
            cancelled: Mutex::new(HashSet::new()),
            peer,
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

    /// Notes that the client cancelled job `id`.
    pub(crate) fn cancel(&self, id: u64) {
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    /// Whether job `id` was cancelled (and forgets it: each id runs once).
    pub(crate) fn cancelled(&self, id: u64) -> bool {
        let mut set = self.cancelled.lock().unwrap_or_else(|e| e.into_inner());
        !set.is_empty() && set.remove(&id)
    }

    /// Sends one message now.
    pub(crate) fn send(&self, msg: &NodeMsg) {
        match encode_frame(msg) {
            Ok(frame) => self.write(&frame),
            Err(e) => tracing::error!(peer = %self.peer, "cannot encode a message: {e}"),
        }
    }

    /// Sends a job's result, batched with whatever else finished meanwhile.
    pub(crate) fn send_done(&self, done: DoneJob) {
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
            self.send(&NodeMsg::Done(batch));
        }
    }

    fn write(&self, frame: &[u8]) {
        if self.is_closed() {
            return;
        }
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = stream.write_all(frame) {
            tracing::debug!(peer = %self.peer, "write failed, closing: {e}");
            self.closed.store(true, Ordering::Release);
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}
