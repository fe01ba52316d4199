//! One link to a node: its driver ([`driver`], over
//! [`ppcore::ClientLink`]), dialling and authenticating ([`dial`]),
//! shipping this program ([`ship`]), the thread of a named node's link
//! ([`spawn`]), and what a node's offer holds of the jobs sent there
//! ([`fit`]).

pub(crate) mod dial;
pub(crate) mod driver;
pub(crate) mod fit;
pub(crate) mod ship;
pub(crate) mod spawn;
