//! One client↔node link as a pure state machine: no socket, no clock, no
//! lock, no thread. quinn-proto is the model.
//!
//! The driver (a thread in `ppclient`) feeds [`Event`]s with the time they
//! happened through [`ClientLink::handle`], then takes the link's outputs,
//! each kind from its own queue as quinn-proto hands them out: bytes to
//! write ([`ClientLink::poll_transmit`]), socket commands ([`LinkIo`]: dial,
//! close; [`ClientLink::poll_io`]) and what happened, for the application
//! ([`LinkEvent`]: up, down, a result, a job to queue again;
//! [`ClientLink::poll_event`]). [`ClientLink::poll_timeout`] says when to
//! come back with [`Event::Timer`] if nothing else happens first (the
//! link's only timer, re-armed after every call). Why a link went down or
//! was refused is typed: [`DownReason`], [`Refusal`].
//!
//! ```text
//!  Connecting --Connected--> Handshake --Welcome--> Ready --Draining--> Draining
//!      ^  |                      |                    |                    |
//!      |  ConnectFailed          | lost/refused       | lost, Goodbye      |
//!      |  v                      v                    v                    v
//!     Backoff <------------------+--------------------+--------------------+
//!        (refused for good, no reconnect, or Close: Closed)
//! ```
//!
//! The link owns the jobs in flight (a [`Ledger`](crate::Ledger)): each job it was given
//! comes out exactly once, as [`LinkEvent::Done`] (a result) or
//! [`LinkEvent::Returned`] (to be queued again: the node was lost, gave it back
//! or the link closed). A result for a job no longer in flight here (a late
//! result after a loss, a duplicate, another attempt) is dropped.
//!
//! Heartbeats: the interval is the smaller of ours and the node's (its
//! `Welcome` says); the link pings once per interval; any bytes received
//! count as proof of life; a node silent for [`MISSED_BEATS`] intervals is
//! lost; the answer to the last ping gives [`ClientLink::rtt`]. Bytes pass
//! the [`Framer`](crate::Framer): the one place frames are made and read.
//!
//! Arguments over a frame go as streams within the send window
//! (`send_window`, see [`crate::link::window`]): a job whose arguments would be
//! queued while the unsent bytes (the driver's outbox, which it reports
//! with [`ClientLink::send_more`], and the queued streams) are at the window
//! goes back to the queue unsent, and the link takes no job until they fall
//! under it. A node that stops reading holds at most the window, plus one
//! job's arguments, in this link.
//!
//! The handshake is Noise `NNpsk0` ([`crate::secure`]): the client's first
//! message, the node's answer, then every frame both ways is sealed. The
//! node's `Welcome` is its first sealed frame, and the client's first
//! sealed frame (a `Ping`) is what proves to the node that the client holds
//! the session. Until the node's answer authenticates, frames are capped at
//! [`HANDSHAKE_MAX_FRAME`]. The link offers its keys in turn: a node that
//! does not hold the first (a rollover) is redialled with the next; one that
//! holds none refuses us for good.
//!
//! | file | owns |
//! | --- | --- |
//! | `client` | [`ClientLink`]: its life (handshake, heartbeats, losses) and its outputs |
//! | `send` | jobs, shared values and streams going out of a [`ClientLink`] |
//! | `config` | [`LinkConfig`] |
//! | `output` | what goes in and out: [`Event`], [`LinkIo`], [`LinkEvent`], [`NodeHello`] |
//! | `reason` | why a link went down ([`DownReason`], [`TransportError`]) or was refused ([`Refusal`]) |
//! | `backoff` | the waits before redialling a lost node |
//! | `stall` | the write-stall rule: a node that takes no bytes for [`write_stall_limit`] is lost |
//! | `sweep` | the ended-job sweep every [`SWEEP_INTERVAL`] |
//! | `offer` | the program offer and upload policy: when to offer, [`OFFER_POLL`], one upload at a time |
//! | `beats` | [`MISSED_BEATS`], shared with the node's link |
//! | `pull` | the one way both ends of a link take their next stream frame |
//! | `testing` | the one test configuration of both ends ([`LinkConfig::for_tests`]) |

mod backoff;
pub(crate) mod beats;
mod client;
mod config;
pub(crate) mod framing;
pub(crate) mod ledger;
pub(crate) mod node;
mod offer;
pub(crate) mod outbox;
mod output;
pub(crate) mod pull;
mod reason;
mod send;
mod stall;
mod sweep;
mod testing;
pub mod upload;
pub mod window;

pub use backoff::{RECONNECT_FIRST, RECONNECT_MAX};
pub use beats::MISSED_BEATS;
pub use client::{
    ClientLink, LinkState, HANDSHAKE_MAX_FRAME, MAX_REFUSAL_PAUSE, REFUSAL_PAUSE, UPLOAD_WINDOW,
};
pub use config::LinkConfig;
pub use offer::OFFER_POLL;
pub use output::{Event, LinkEvent, LinkIo, NodeHello};
pub use reason::{DownReason, Refusal, TransportError};
pub use send::ShareError;
pub use stall::{write_stall_limit, MIN_WRITE_STALL};
pub use sweep::SWEEP_INTERVAL;

#[cfg(test)]
mod tests;
