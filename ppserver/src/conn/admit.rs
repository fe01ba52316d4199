//! Letting a connection in: counted (or refused) on the accept thread, in
//! the order connections came, so that a refused one costs a write and no
//! thread; registered with the node until its driver ends.

use super::driver::{self, Wired};
use crate::node::handle::{Conn, Waker};
use crate::node::Node;
use mio::Poll;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A connection let in and registered with the node, to be served.
pub(crate) struct Admitted {
    registered: Registered,
    wired: Wired,
}

/// A connection's place in the node, given back when dropped (whether it
/// was served or its thread never started).
struct Registered {
    node: Arc<Node>,
    conn: Arc<Conn>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conn.mark_closed();
        self.node.close(self.id);
    }
}

/// Lets a new connection in, on the calling thread (the accept thread, so
/// connections are counted in the order they came and a refused one costs
/// no thread), or refuses it with a reason (`None`).
pub(crate) fn admit(node: &Arc<Node>, stream: TcpStream) -> Option<Admitted> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
    let source = stream
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    // Refused before anything is made for it: a flood costs a write each.
    if let Some(refused) = node.refuses(source) {
        tracing::debug!(%peer, "refused: {refused}");
        refuse(stream, &refused);
        return None;
    }
    let watched = Poll::new().and_then(|poll| Ok((Waker::new(&poll)?, poll)));
    let (waker, poll) = match watched {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(%peer, "cannot watch connection: {e}");
            return None;
        }
    };
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let conn = Arc::new(Conn::new(
        ev_tx,
        Arc::clone(&waker),
        Arc::clone(&node.memory),
    ));
    let id = match node.open(&conn, source) {
        Ok(id) => id,
        Err(refused) => {
            tracing::debug!(%peer, "refused: {refused}");
            refuse(stream, &refused);
            return None;
        }
    };
    let registered = Registered {
        node: Arc::clone(node),
        conn,
        id,
    };
    let wired = Wired {
        stream,
        poll,
        waker,
        events,
        peer,
    };
    Some(Admitted { registered, wired })
}

impl Admitted {
    /// Serves the connection until it closes; logs why it ended.
    pub(crate) fn serve(self) {
        let Admitted { registered, wired } = self;
        driver::serve(&registered.node, registered.id, &registered.conn, wired);
    }
}

/// Refuses a connection at once, with a reason, on the calling thread (the
/// accept thread for a connection over the limit: a flood costs no thread
/// each).
fn refuse(mut stream: TcpStream, reason: &dyn std::fmt::Display) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    // Before any handshake: a refusal frame, nothing derived from a key.
    let refusal = ppcore::secure::refusal_busy(&reason.to_string());
    if let Ok(frame) = ppcore::Framer::new(refusal.len()).encode_handshake(&refusal) {
        let _ = stream.write_all(&frame);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
