//! Finding nodes beyond those named: UDP discovery probes and nodes that
//! join a listening client ([`discovery`]), and nodes behind a DNS name
//! ([`dns`]).

pub(crate) mod discovery;
pub(crate) mod dns;
