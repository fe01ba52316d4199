//! What a job is and how its values travel: the [`Job`](definition::Job)
//! trait and the [`job!`](crate::job!) macro, the MessagePack codec of
//! arguments and results, numeric arrays, shared values, the registry of
//! job names, and how a job fails.
//!
//! | file | owns |
//! | --- | --- |
//! | `definition` | the `Job` trait, the `job!` macro, running a job with its panics caught, the type-erased runner |
//! | `context` | [`JobContext`](context::JobContext): what the running job holds (`job_context()`), set per run by whoever runs it |
//! | `codec` | `encode`, `decode`, `check_size`: the MessagePack codec of arguments and results |
//! | `param_codec` | the codec `job!` picks per parameter: vectors of numbers as raw bytes, serde for the rest (the macro's business, public as `ppcore::__fast`) |
//! | `binaries_as_arrays` | the decoder's second try: binaries rewritten as arrays of numbers, for serde's buffering types |
//! | `array` | [`Array`](array::Array): numeric vectors as little-endian raw bytes in one binary |
//! | `shared` | [`Shared`](shared::Shared): a value sent once per node and decoded once per process; a node's cache of them (public as `ppcore::shared`) |
//! | `registry` | [`Registry`](registry::Registry): job names to type-erased runners, filled by `job!` at link time |
//! | `error` | [`JobError`](error::JobError) and [`ErrorKind`](error::ErrorKind); the `debug_as_display!` helper |
//! | `bigbuf` | buffers for whole payloads, backed by huge pages where the kernel offers them |
//! | `idmap` | maps keyed by job id, with a cheap seeded hash |
//!
//! Nothing here names another top-level module: the wire, the session and
//! the links build on it.

pub(crate) mod array;
pub(crate) mod bigbuf;
pub(crate) mod binaries_as_arrays;
pub(crate) mod codec;
pub(crate) mod context;
pub(crate) mod definition;
pub(crate) mod error;
pub(crate) mod idmap;
pub(crate) mod param_codec;
pub(crate) mod registry;
pub mod shared;
