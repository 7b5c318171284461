//! Starling's core: identities, signed append-only feeds and the local SQLite
//! store of a peer-to-peer social node.
//!
//! Guarantees: every entry is signed and hash-chained, decoding of anything
//! that came from outside is total and canonical, and nothing that failed
//! validation is ever partly written. The crate has no FFI or CLI code; the
//! `starling` command and the uniffi bindings are thin clients of [`Node`].

pub mod encoding;
pub mod error;
pub mod events;
pub mod feed;
pub mod identity;
pub mod mailbox;
pub mod messaging;
pub mod net;
pub mod node;
pub mod store;
pub mod sync;

pub use error::{Error, Result};
pub use identity::id::{AuthorId, BlobId, EntryId};
pub use node::Node;
