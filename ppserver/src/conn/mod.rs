//! One connection of a node: letting it in ([`admit`]: counted or refused
//! on the accept thread) and its driver (`driver`: the one thread that
//! reads and writes its socket, a thin I/O shell around
//! [`ppcore::NodeLink`]), with its spill files (`spilled`: the kept values
//! over `--max-memory` the link asked it to write). How the rest of the node reaches a connection
//! (its handle, `Conn`) is the node's: `node::handle`.

pub(crate) mod admit;
mod driver;
mod spilled;
