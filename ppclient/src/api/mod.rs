//! What the user holds: [`Server`](server::Server) and its
//! [`Builder`](builder::Builder), per-job [`Options`](options::Options), and
//! the handles of submitted jobs. Everything else in the crate sits below it.

pub(crate) mod builder;
pub(crate) mod handle;
pub(crate) mod options;
pub(crate) mod server;
