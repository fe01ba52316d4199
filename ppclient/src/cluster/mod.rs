//! What the client knows of its nodes and shares between its threads: one
//! record per node, read and written as one snapshot ([`node`]), the queue,
//! the links and the stop flag ([`state`]), the table of nodes joining
//! a listening client ([`joins`]), and kept results: what the client holds
//! of them ([`values`]), where the jobs that take them run ([`kept`]) and
//! how they move node to node ([`transfer`]), and how long a job waits for a
//! worker where its inputs lie ([`near`]); and requests nobody can meet,
//! failed at once or after a stated wait ([`unmet`]).
//! Names no link driver: the drivers write into it.

pub(crate) mod joins;
pub(crate) mod kept;
pub(crate) mod near;
pub(crate) mod node;
pub(crate) mod state;
pub(crate) mod transfer;
pub(crate) mod unmet;
pub(crate) mod values;
