//! Scheduling work on one machine: the job queue, round robin between
//! clients, the client's byte budget, worker threads, counting unfinished
//! work, and the statistics of jobs run.
//!
//! | file | owns |
//! | --- | --- |
//! | `queue` | [`Lanes`](queue::Lanes): the job queue, with a front lane for work handed back; consumers that take only some kinds of job, woken ([`Wake`](queue::Wake)) by the next push |
//! | `lane` | one lane of the queue: items in order with their sequence numbers kept apart, as runs, so a queued job costs the queue one pointer |
//! | `round_robin` | [`RoundRobin`](round_robin::RoundRobin): queues per client served in turn (a node's fair share of workers) |
//! | `budget` | the client's byte budget: `ByteBudget` (pure) and `BudgetGate` (waits while full) (public as `ppcore::budget`) |
//! | `pool` | [`Pool`](pool::Pool): resizable worker threads pulling from the queue |
//! | `pending` | [`Pending`](pending::Pending): a count of unfinished work, with waiting for zero |
//! | `stats` | `NodeCounters` while jobs run, `Stats` to read and print |
//! | `resources` | what a job asks for ([`Request`](resources::Request)) and a machine offers ([`Offer`](resources::Offer)); the [`Ledger`](resources::Ledger) of what is free, held instances, and [`Turns`](resources::Turns) (the oldest waiter gets the machine after a bounded wait) (public as `ppcore::resources`) |
//! | `slots` | [`Slots`](slots::Slots): a machine's ledger shared by the threads running its jobs; a job waits on its thread until its request fits (public as `ppcore::slots`) |
//! | `values` | [`Directory`](values::Directory): where each kept result lies, which jobs wait for which, where a job whose inputs are ready runs (public as `ppcore::values`) |
//!
//! Only `queue` (`lane`), `pool` (`queue`) and `slots` (`resources`, and `job`'s context)
//! name other files.

pub mod budget;
pub(crate) mod lane;
pub(crate) mod pending;
pub(crate) mod pool;
pub(crate) mod queue;
pub mod resources;
pub(crate) mod round_robin;
pub mod slots;
pub(crate) mod stats;
pub mod values;
