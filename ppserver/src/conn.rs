//! One client connection: the handshake, then jobs in and results out.
//! Whatever goes wrong here ends this connection only.

use crate::node::Node;
use crate::out::Out;
use ppcore::wire::{ClientMsg, NodeMsg};
use ppcore::{FrameError, FrameReader, NodeHandshake};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

/// The largest frame a peer may send before it has authenticated.
const HANDSHAKE_MAX_FRAME: usize = 4096;

/// Serves one connection until it closes; logs why it ended.
pub(crate) fn serve(node: &Arc<Node>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(%peer, "cannot use connection: {e}");
            return;
        }
    };
    let out = Arc::new(Out::new(writer, peer.clone(), node.config.max_frame));
    let Some(id) = node.open(&out) else {
        let reason = format!(
            "too many connections (limit {})",
            node.config.max_connections
        );
        tracing::warn!(%peer, "refused: {reason}");
        out.send(&NodeMsg::Reject { reason });
        out.close();
        return;
    };
    match session(node, &out, stream) {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(reason) => {
            tracing::info!(%peer, "connection closed: {reason}");
            out.send(&NodeMsg::Reject { reason });
        }
    }
    out.close();
    node.close(id);
}

fn session(node: &Arc<Node>, out: &Arc<Out>, stream: TcpStream) -> Result<(), String> {
    let timeout = node.config.handshake_timeout;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(stream, HANDSHAKE_MAX_FRAME);
    reader.set_deadline(Some(Instant::now() + timeout));
    let nonce = ppcore::nonce().map_err(|e| format!("no randomness: {e}"))?;
    let mut handshake = NodeHandshake::new(node.config.secret.clone(), nonce);
    while !handshake.is_done() {
        let msg = read(&mut reader, "during the handshake");
        node.meters.received(reader.take_bytes_read());
        let Some(msg) = msg.map_err(|e| node.meters.handshake_failed(e))? else {
            node.meters.handshake_failed(());
            return Ok(());
        };
        if let Some(reply) = handshake
            .on_message(msg)
            .map_err(|e| node.meters.handshake_failed(e))?
        {
            out.send(&reply);
        }
    }
    out.send(&node.welcome());
    if node.draining() {
        out.send(&NodeMsg::Draining);
    }
    reader.set_deadline(None);
    reader.set_max(node.config.max_frame);
    reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| e.to_string())?;
    loop {
        let msg = read(&mut reader, "");
        node.meters.received(reader.take_bytes_read());
        let Some(msg) = msg? else {
            return Ok(());
        };
        match msg {
            ClientMsg::Run(jobs) => node.submit(jobs, out),
            ClientMsg::Cancel { id } => node.cancel(out, id),
            ClientMsg::Ping(n) => out.send(&NodeMsg::Pong(n)),
            ClientMsg::Status => out.send(&NodeMsg::Status(node.status())),
            ClientMsg::Goodbye => return Ok(()),
            ClientMsg::Hello { .. } | ClientMsg::Auth { .. } => {
                return Err("handshake message after the handshake".into())
            }
        }
    }
}

/// The next message; `Ok(None)` when the peer closed cleanly.
fn read(reader: &mut FrameReader<TcpStream>, when: &str) -> Result<Option<ClientMsg>, String> {
    match reader.read::<ClientMsg>() {
        Ok(msg) => Ok(msg),
        Err(FrameError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!("timed out {when}").trim_end().to_owned())
        }
        Err(FrameError::Io(e)) => Err(format!("read failed: {e}")),
        Err(e) => Err(format!("{e} {when}").trim_end().to_owned()),
    }
}
