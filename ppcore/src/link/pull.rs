//! The one way a link takes the next stream frame out of its queued
//! streams: both ends of a link (the client's
//! [`ClientLink`](crate::link::ClientLink) and the node's `NodeLink`) pull
//! their streams through [`next_stream_frame`].

use crate::link::framing::Framer;
use crate::wire::stream::{StreamFrame, Streams};
use serde::Serialize;

/// A stream frame's bytes around its data: its frame is allocated once at
/// about its final size.
const CHUNK_OVERHEAD: usize = 64;

/// The next frame of `streams`, encoded by `framer` as the message `wrap`
/// makes of it, and the message that follows it (after a stream's last
/// chunk, the one that claims the stream); `None` if no frame waits. The
/// bytes are `None` in the (never seen) case that the frame does not encode:
/// the peer then misses it and its stream fails, nothing is corrupted.
pub(crate) fn next_stream_frame<M: Serialize>(
    streams: &mut Streams<M>,
    framer: &mut Framer,
    wrap: impl FnOnce(StreamFrame) -> M,
) -> Option<(Option<Vec<u8>>, Option<M>)> {
    let (frame, then) = streams.next_frame()?;
    let size = match &frame {
        StreamFrame::Chunk { data, .. } => data.len() + CHUNK_OVERHEAD,
        _ => 0,
    };
    let bytes = framer.encode_sized(&wrap(frame), size).ok();
    Some((bytes, then))
}
