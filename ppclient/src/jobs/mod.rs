//! A job's life in the client, below everything that schedules it: the
//! type-erased queue item and how a local worker runs it ([`task`]), with
//! what running one needs ([`ctx`]), its
//! result cell and one lock ([`cell`]), what few jobs are given and
//! nothing changes ([`spec`]), timeouts ([`timer`]), pending counts and outcome
//! counters ([`tracker`]), what the dashboard records of jobs and links
//! ([`recorder`]), and the local pool's ledger of requests ([`slots`]).

pub(crate) mod attempt;
pub(crate) mod cell;
pub(crate) mod ctx;
pub(crate) mod holder;
pub(crate) mod queue_key;
pub(crate) mod recorder;
pub(crate) mod slots;
pub(crate) mod spec;
pub(crate) mod task;
pub(crate) mod timer;
pub(crate) mod tracker;
