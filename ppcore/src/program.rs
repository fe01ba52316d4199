//! `ppcore::program`, the public path of `wire::program`: every
//! item is defined there (name it there inside the crate). A file rather
//! than a `pub use` in `lib.rs` so that paths through it name this file,
//! not the crate root.

pub use crate::wire::program::*;
