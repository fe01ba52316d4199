//! Starting the link of a node known by name: its record joins the
//! server's, and a thread drives its link.

use crate::cluster::node::NodeRecord;
use crate::cluster::state::Core;
use crate::link::driver::{drive, Target};
use std::sync::Arc;

/// Adds a link to the node at `name` and starts its driver thread.
pub(crate) fn start_static(core: &Arc<Core>, name: String) {
    if core.stopped() {
        return;
    }
    let record = NodeRecord::new(name);
    core.add_link(Arc::clone(&record));
    let core = Arc::clone(core);
    let spawned =
        Arc::clone(&core).spawn("pp-link", move || drive(&core, Target::Named(record), None));
    if let Err(e) = spawned {
        tracing::warn!("cannot start a link thread: {e}");
    }
}
