//! `ppcore::secure`, the public path of the session's handshake
//! (`session::handshake`) and its error (`session::error`): every item is
//! defined there (name it there inside the crate). A file rather than a
//! `pub use` in `lib.rs` so that paths through it name this file, not the
//! crate root.

pub use crate::session::error::SecureError;
pub use crate::session::handshake::*;
