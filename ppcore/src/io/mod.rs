//! The parts of ppcore that do I/O of their own: the small HTTP server
//! (sockets, one `mio` thread), worker processes (pipes to a child that
//! runs jobs), and the skeleton of a link driver both ends share.
//!
//! | file | owns |
//! | --- | --- |
//! | `http` | the HTTP/1.1 server of `/metrics` and the dashboard: pure request parsing and connection table, one thread around them (public as `ppcore::http`) |
//! | `driver` | what both link drivers are made of (public as `ppcore::io_driver`): a turn's sizes, the `mio` tokens, the [`driver::Waker`], watching a socket (and its writes only while bytes wait), one read, when to spin, the spin and the sleep |
//! | `worker` | worker processes: `init_worker`, the one way a program re-runs itself as a job server (public as `ppcore::worker`) |
//!
//! `worker` names `job` and `wire`; `driver` names the queue's `Wake`;
//! `http` names nothing outside itself.

pub mod driver;
pub mod http;
pub mod worker;
