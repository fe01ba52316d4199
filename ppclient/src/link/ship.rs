//! Shipping this program to nodes that lack its jobs: [`init`], the offer
//! when a link comes up, and the upload, one chunk per driver turn so that
//! jobs and heartbeats keep flowing beside it.
//!
//! The node verifies the hash before it runs anything and keeps the file in
//! its cache: a second client with the same program uploads nothing.

use crate::cluster::node::{NodeRecord, Ship};
use ppcore::link::ClientLink;
use ppcore::program::{ProgramId, ProgramInfo};
use ppcore::upload::Sender;
use ppcore::Registry;
use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static INIT: AtomicBool = AtomicBool::new(false);

/// Call first in `main` of a client program whose jobs should run on any
/// `ppserver` node. Started normally, it returns at once and lets the
/// program ship itself to nodes that lack its jobs. Started by a node as a
/// worker, it serves the jobs of this program and never returns.
///
/// ```
/// ppclient::job! {
///     /// A job only this program has.
///     pub fn triple(x: u64) -> u64 { 3 * x }
/// }
/// fn main() {
///     ppclient::init(); // a worker process never gets past this line
///     // ... build a Server with your nodes and submit `triple` ...
/// }
/// # main();
/// ```
pub fn init() {
    ppcore::init_worker();
    INIT.store(true, Ordering::Release);
    // Hashing a big program takes a while: start now, off main's path; a
    // link that comes up first waits for it without blocking.
    let _ = std::thread::Builder::new()
        .name("pp-ship-hash".into())
        .spawn(|| drop(program()));
}

/// Whether this program called [`init`].
pub(crate) fn initialized() -> bool {
    INIT.load(Ordering::Acquire)
}

/// What a job error says when no node has a job and [`init`] was not called.
pub(crate) const INIT_HINT: &str =
    "to run this program's own jobs on nodes without them, call ppclient::init() first in main";

/// This program's file: the running image itself, even if the path was
/// replaced since it started.
fn exe_path() -> std::path::PathBuf {
    let proc = Path::new("/proc/self/exe");
    match proc.exists() {
        true => proc.to_path_buf(),
        false => std::env::current_exe().unwrap_or_else(|_| proc.to_path_buf()),
    }
}

static INFO: OnceLock<Result<ProgramInfo, String>> = OnceLock::new();

/// This program, described once (blocks while it is hashed).
fn program() -> Result<&'static ProgramInfo, String> {
    INFO.get_or_init(|| {
        ProgramInfo::of_file(&exe_path()).map_err(|e| format!("cannot ship this program: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The jobs linked into this program (what its workers serve).
fn own_jobs() -> &'static HashSet<(String, String)> {
    static JOBS: OnceLock<HashSet<(String, String)>> = OnceLock::new();
    JOBS.get_or_init(|| {
        Registry::linked()
            .map(|r| {
                r.entries()
                    .map(|e| (e.name.to_owned(), e.signature.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// An upload under way on one link.
pub(crate) struct Upload {
    id: ProgramId,
    sender: Sender<File>,
}

fn set(record: Option<&NodeRecord>, ship: Ship) {
    if let Some(r) = record {
        r.set_ship(ship);
    }
}

/// A link came up: the link decides whether this program is to be offered
/// (see [`ClientLink::plan_offer`]); then [`try_offer`] each turn while the
/// offer is due. Call before the node's jobs are published, so that nobody
/// takes its jobs for unrunnable meanwhile.
pub(crate) fn on_up<T>(link: &mut ClientLink<T>, record: Option<&NodeRecord>, now: Instant) {
    let due = link.plan_offer(own_jobs(), initialized(), now);
    set(record, if due { Ship::Pending } else { Ship::No });
}

/// Offers this program if it is hashed (else the link looks again later);
/// if it cannot be described, there is nothing to offer: refused with the
/// reason.
pub(crate) fn try_offer<T>(link: &mut ClientLink<T>, record: Option<&NodeRecord>, now: Instant) {
    match INFO.get() {
        None => link.offer_later(now),
        Some(Ok(info)) => link.offer(info),
        Some(Err(reason)) => {
            link.drop_offer();
            set(record, Ship::Refused(reason.clone()));
        }
    }
}

/// The node asked for the program: start sending it.
pub(crate) fn start_upload(id: ProgramId) -> Result<Upload, String> {
    match program() {
        Ok(info) if info.id == id => {}
        _ => return Err("the node asked for a program we did not offer".into()),
    }
    let file = File::open(exe_path()).map_err(|e| format!("cannot read this program: {e}"))?;
    Ok(Upload {
        id,
        sender: Sender::new(file),
    })
}

/// Sends the next chunk; false once the upload is over (sent, or the link
/// went down, or reading failed).
pub(crate) fn send_chunk<T>(upload: &mut Upload, link: &mut ClientLink<T>) -> bool {
    match upload.sender.next_chunk() {
        Ok(Some((offset, data))) => link.chunk(upload.id, offset, data),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!("cannot read this program to ship it: {e}");
            false
        }
    }
}
