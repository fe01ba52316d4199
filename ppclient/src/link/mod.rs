//! One link to a node: its driver ([`driver`], over
//! [`ppcore::ClientLink`]), dialling and authenticating ([`dial`]),
//! shipping this program ([`ship`]), and the thread of a named node's link
//! ([`spawn`]).

pub(crate) mod dial;
pub(crate) mod driver;
pub(crate) mod ship;
pub(crate) mod spawn;
