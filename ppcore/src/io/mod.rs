//! The parts of ppcore that do I/O of their own: the small HTTP server
//! (sockets, one `mio` thread) and worker processes (pipes to a child that
//! runs jobs).
//!
//! | file | owns |
//! | --- | --- |
//! | `http` | the HTTP/1.1 server of `/metrics` and the dashboard: pure request parsing and connection table, one thread around them (public as `ppcore::http`) |
//! | `worker` | worker processes: `init_worker`, the one way a program re-runs itself as a job server (public as `ppcore::worker`) |
//!
//! `worker` names `job` and `wire`; `http` names nothing outside itself.

pub mod driver;
pub mod http;
pub mod worker;
