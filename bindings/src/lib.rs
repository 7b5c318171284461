//! `starling-ffi`: the Starling library as phone apps see it, through
//! generated Kotlin and Swift bindings (uniffi, proc-macros only).
//!
//! A thin layer over `starling-core`: it converts ids to and from their
//! printable strings, core errors into [`StarlingError`], runs every store
//! call on the library's own tokio runtime (so Kotlin `suspend` and Swift
//! `async` callers never block their threads), bridges the app's key storage
//! and logger (foreign traits), turns node events into listener calls, runs
//! networking (sync, blobs, invites, relays) on that runtime and wraps
//! end-to-end encrypted direct and group messages.

uniffi::setup_scaffolding!("starling");

mod error;
mod events;
mod keys;
mod logging;
mod messaging;
mod net;
mod node;
mod runtime;
mod types;

pub use error::StarlingError;
pub use events::{NodeEvent, NodeEventListener, Subscription};
pub use keys::{AtRestKeyProvider, generate_at_rest_key};
pub use logging::{LogLevel, LogRecord, LogSink, clear_logger, set_log_level, set_logger};
pub use messaging::{Conversation, ConversationSummary, GroupInfo, Message, TrustState};
pub use net::{InviteAccepted, NetworkConfig, PeerInfo, Reachability, RelayInfo, SyncStatus};
pub use node::{Diagnostics, StarlingNode, diagnostics};
pub use types::{
    BlobRef, ImportReport, NewIdentity, NodeConfig, Notification, NotificationKind,
    NotificationPage, PostPage, PostView, ProfileView, ReactionCount,
};

/// The version of the Starling library (the `starling-ffi` crate), e.g. "0.1.0".
#[uniffi::export]
pub fn library_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
