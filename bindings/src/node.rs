//! [`StarlingNode`]: the one object an app holds, wrapping the core's `Node`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use starling_core::node::{Cursor, PageRequest};
use starling_core::{AuthorId, EntryId, Node};

use crate::error::StarlingError;
use crate::events::{self, NodeEventListener, Subscription};
use crate::keys::{AtRestKeyProvider, KeyBridge};
use crate::runtime::blocking;
use crate::types::{
    ImportReport, NewIdentity, NodeConfig, NotificationPage, PostPage, PostView, ProfileView,
    ReactionCount, reaction_counts,
};

/// Nodes alive in this process (for leak checks, see [`diagnostics`]).
pub(crate) static LIVE_NODES: AtomicU64 = AtomicU64::new(0);

/// A Starling node: one identity, one data directory, one local store.
///
/// Open it once at app start with `StarlingNode.open` and share it; it is
/// safe to use from any thread or coroutine. Every method that touches the
/// store is `suspend` (Kotlin) / `async` (Swift) and runs on the library's
/// own background threads, so calling it from the main thread never blocks.
///
/// Ids are passed as their printable strings: authors `stl1…`, entries
/// `stle1…`. A malformed id fails with `InvalidId`.
///
/// Lifetime: `shutdown()` closes the store (later calls fail
/// with `Closed`); releasing the object (Kotlin `close()`/`use {}`, Swift
/// deinit) does the same once nothing else holds it.
#[derive(uniffi::Object)]
pub struct StarlingNode {
    inner: RwLock<Option<Arc<Node>>>,
    data_dir: PathBuf,
    database_path: PathBuf,
    subscriptions: events::SubscriptionSet,
    /// Networking, while it runs (see `startNetwork`).
    pub(crate) network: crate::net::NetSlot,
}

impl std::fmt::Debug for StarlingNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StarlingNode")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for StarlingNode {
    fn drop(&mut self) {
        self.subscriptions.cancel_all();
        self.network.stop_in_background();
        LIVE_NODES.fetch_sub(1, Ordering::Relaxed);
    }
}

fn author(s: &str) -> Result<AuthorId, StarlingError> {
    Ok(AuthorId::from_str(s.trim())?)
}

fn entry(s: &str) -> Result<EntryId, StarlingError> {
    Ok(EntryId::from_str(s.trim())?)
}

fn page(limit: u32, before: Option<String>) -> Result<PageRequest, StarlingError> {
    let before = match before {
        Some(c) => Some(Cursor::from_str(&c)?),
        None => None,
    };
    Ok(PageRequest { limit, before })
}

fn path_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl StarlingNode {
    /// The core node, or `Closed`.
    pub(crate) fn node(&self) -> Result<Arc<Node>, StarlingError> {
        self.inner
            .read()
            .map_err(|_| StarlingError::internal("node lock poisoned"))?
            .clone()
            .ok_or_else(StarlingError::closed)
    }

    /// Runs `f` against the core node on the library's blocking pool.
    pub(crate) async fn with_node<T, F>(&self, f: F) -> Result<T, StarlingError>
    where
        T: Send + 'static,
        F: FnOnce(&Node) -> Result<T, StarlingError> + Send + 'static,
    {
        let node = self.node()?;
        blocking(move || f(&node)).await
    }
}

#[uniffi::export]
impl StarlingNode {
    /// Opens (creating if needed) the node stored in `config.dataDir`.
    ///
    /// `keys` supplies the at-rest key; it is asked only when a secret is
    /// needed, so opening works even while the device is locked.
    ///
    /// Throws `Storage` if the directory or database cannot be used (or was
    /// written by a newer app version).
    #[uniffi::constructor]
    pub async fn open(
        config: NodeConfig,
        keys: Arc<dyn AtRestKeyProvider>,
    ) -> Result<Arc<Self>, StarlingError> {
        if config.data_dir.trim().is_empty() {
            return Err(StarlingError::invalid_input("dataDir is empty"));
        }
        let dir = PathBuf::from(&config.data_dir);
        let node = blocking(move || Ok(Node::open(&dir, Arc::new(KeyBridge(keys)))?)).await?;
        tracing::info!(data_dir = %node.data_dir().display(), "node opened");
        LIVE_NODES.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(StarlingNode {
            data_dir: node.data_dir().to_owned(),
            database_path: node.database_path(),
            inner: RwLock::new(Some(Arc::new(node))),
            subscriptions: Default::default(),
            network: Default::default(),
        }))
    }

    /// The data directory this node was opened on.
    pub fn data_dir(&self) -> String {
        path_string(&self.data_dir)
    }

    /// Path of the node's SQLite database file (inside the data directory),
    /// e.g. to exclude it from cloud backups.
    pub fn database_path(&self) -> String {
        path_string(&self.database_path)
    }

    /// True after `shutdown()`.
    pub fn is_shut_down(&self) -> bool {
        self.inner.read().map(|n| n.is_none()).unwrap_or(true)
    }

    /// Closes the node: stops networking (in the background) and its event
    /// subscriptions, and closes the store once calls already running have
    /// finished. Every later call fails with
    /// `Closed`. Idempotent; cheap; does not block.
    pub fn shutdown(&self) {
        let node = match self.inner.write() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        self.subscriptions.cancel_all();
        self.network.stop_in_background();
        if node.is_some() {
            tracing::info!(data_dir = %self.data_dir.display(), "node shut down");
        }
        // `node` drops here; the store closes when the last running call
        // releases its reference.
    }

    /// Subscribes `listener` to this node's events (see `NodeEvent`);
    /// delivery starts at once and runs until the returned subscription is
    /// cancelled or released, or the node shuts down. Kotlin and Swift apps
    /// usually call the `events()` Flow / AsyncStream helper instead.
    ///
    /// Throws `Closed` after `shutdown()`.
    pub fn subscribe(
        &self,
        listener: Arc<dyn NodeEventListener>,
    ) -> Result<Arc<Subscription>, StarlingError> {
        let rx = self.node()?.subscribe();
        Ok(events::start(
            &self.subscriptions,
            rx,
            events::from_core,
            listener,
        ))
    }

    // ----- identity -----------------------------------------------------

    /// Whether this node already has an identity (created or restored).
    pub async fn has_identity(&self) -> Result<bool, StarlingError> {
        self.with_node(|n| Ok(n.has_identity()?)).await
    }

    /// Creates a new identity and starts its feed; with `name`, also
    /// publishes a profile with that display name (at most 64 bytes).
    ///
    /// Returns the author id and the recovery phrase: show the phrase to the
    /// user once to write down.
    ///
    /// Throws `IdentityExists` if this node already has one, `Locked` if the
    /// at-rest key is unavailable, `InvalidInput` for a name that is too long.
    #[uniffi::method(default(name = None))]
    pub async fn create_identity(
        &self,
        name: Option<String>,
    ) -> Result<NewIdentity, StarlingError> {
        self.with_node(move |n| {
            let (author, phrase) = n.create_identity(name.as_deref())?;
            Ok(NewIdentity {
                author_id: author.to_string(),
                recovery_phrase: phrase.expose().to_owned(),
            })
        })
        .await
    }

    /// Restores an identity from its 24-word recovery phrase; returns its
    /// author id. Nothing is published: sync the old feed from peers before
    /// posting, or the new posts will fork it.
    ///
    /// Throws `InvalidInput` for a phrase with a wrong word, word count or
    /// checksum (nothing is changed), `IdentityExists` if this node holds a
    /// different identity, `Locked` if the at-rest key is unavailable.
    pub async fn restore_identity(&self, phrase: String) -> Result<String, StarlingError> {
        self.with_node(move |n| {
            let phrase = zeroize::Zeroizing::new(phrase);
            match n.restore_identity(&phrase) {
                Ok(author) => Ok(author.to_string()),
                Err(starling_core::Error::Crypto(reason)) => Err(StarlingError::InvalidInput {
                    detail: format!("not a valid recovery phrase: {reason}"),
                }),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// The identity's 24-word recovery phrase, to show it to the user again.
    /// Needs the at-rest key. Never log or store it.
    ///
    /// Throws `NoIdentity`, or `Locked` if the at-rest key is unavailable.
    pub async fn recovery_phrase(&self) -> Result<String, StarlingError> {
        self.with_node(|n| Ok(n.recovery_phrase()?.expose().to_owned()))
            .await
    }

    /// This node's author id (`stl1…`). Throws `NoIdentity` before one was
    /// created or restored.
    pub async fn author_id(&self) -> Result<String, StarlingError> {
        self.with_node(|n| Ok(n.whoami()?.to_string())).await
    }

    // ----- publishing ---------------------------------------------------

    /// Publishes a post (at most 8192 bytes of UTF-8 text); returns its
    /// entry id. With `replyTo`, the post is a reply in that post's thread.
    /// Authors written as `@stl1…` in the text are mentioned (and notified).
    /// The post is durably stored when this returns.
    ///
    /// Throws `InvalidInput` for empty or too long text, `InvalidId` for a
    /// malformed `replyTo`, `NoIdentity`, `Locked`.
    #[uniffi::method(default(reply_to = None))]
    pub async fn post(
        &self,
        text: String,
        reply_to: Option<String>,
    ) -> Result<String, StarlingError> {
        let reply_to = reply_to.as_deref().map(entry).transpose()?;
        self.with_node(move |n| Ok(n.post(&text, reply_to)?.to_string()))
            .await
    }

    /// Replies to the post `parent`: the same as `post(text, replyTo = parent)`.
    pub async fn reply(&self, parent: String, text: String) -> Result<String, StarlingError> {
        let parent = entry(&parent)?;
        self.with_node(move |n| Ok(n.post(&text, Some(parent))?.to_string()))
            .await
    }

    /// Reacts to the entry `target` with `emoji` (1 to 64 bytes, usually one
    /// emoji); returns the reaction's entry id.
    pub async fn react(&self, target: String, emoji: String) -> Result<String, StarlingError> {
        let target = entry(&target)?;
        self.with_node(move |n| Ok(n.react(target, &emoji)?.to_string()))
            .await
    }

    /// Deletes one of your own entries; returns the id of the delete entry.
    /// The post stays in threads as a "deleted" placeholder without text, and
    /// its text is erased from this device.
    ///
    /// Throws `NotFound` if the entry is not stored, `InvalidInput` if it is
    /// someone else's (use `hide` instead).
    pub async fn delete(&self, target: String) -> Result<String, StarlingError> {
        let target = entry(&target)?;
        self.with_node(move |n| Ok(n.delete(target)?.to_string()))
            .await
    }

    /// Hides any entry from your views on this device only. Nothing is
    /// published.
    pub async fn hide(&self, target: String) -> Result<(), StarlingError> {
        let target = entry(&target)?;
        self.with_node(move |n| Ok(n.hide(target)?)).await
    }

    /// Follows `author`: their posts appear in your timeline. Returns the id
    /// of the follow entry. Throws `InvalidInput` for following yourself.
    pub async fn follow(&self, author_id: String) -> Result<String, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.follow(a)?.to_string())).await
    }

    /// Stops following `author`.
    pub async fn unfollow(&self, author_id: String) -> Result<String, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.unfollow(a)?.to_string()))
            .await
    }

    /// Blocks `author`: their stored entries are removed from this device,
    /// new ones are refused and they disappear from every view. The block is
    /// a public entry of your feed.
    pub async fn block(&self, author_id: String) -> Result<String, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.block(a)?.to_string())).await
    }

    /// Lifts a block on `author`.
    pub async fn unblock(&self, author_id: String) -> Result<String, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.unblock(a)?.to_string())).await
    }

    /// Updates your profile: `null`/`nil` keeps the current value, an empty
    /// string clears it. Name at most 64 bytes, about at most 1024 bytes.
    #[uniffi::method(default(name = None, about = None))]
    pub async fn set_profile(
        &self,
        name: Option<String>,
        about: Option<String>,
    ) -> Result<String, StarlingError> {
        self.with_node(move |n| Ok(n.set_profile(name, about)?.to_string()))
            .await
    }

    // ----- views --------------------------------------------------------

    /// Your home timeline, newest first: your posts and those of the authors
    /// you follow (hidden posts and blocked authors left out). `limit` is
    /// 1..=200; pass the previous page's `nextCursor` as `before` for older
    /// posts. Throws `NoIdentity`, `InvalidInput` for a bad limit or cursor.
    #[uniffi::method(default(limit = 50, before = None))]
    pub async fn timeline(
        &self,
        limit: u32,
        before: Option<String>,
    ) -> Result<PostPage, StarlingError> {
        let req = page(limit, before)?;
        self.with_node(move |n| Ok(n.timeline(req)?.into())).await
    }

    /// One author's posts, newest first, paged like `timeline`.
    #[uniffi::method(default(limit = 50, before = None))]
    pub async fn feed(
        &self,
        author_id: String,
        limit: u32,
        before: Option<String>,
    ) -> Result<PostPage, StarlingError> {
        let a = author(&author_id)?;
        let req = page(limit, before)?;
        self.with_node(move |n| Ok(n.feed(a, req)?.into())).await
    }

    /// A thread: the root post first, then every reply in it, oldest first.
    /// Pass any post's `root` (or the id of a post without one). Throws
    /// `NotFound` if the root is not stored.
    pub async fn thread(&self, root: String) -> Result<Vec<PostView>, StarlingError> {
        let root = entry(&root)?;
        self.with_node(move |n| Ok(n.thread(root)?.into_iter().map(Into::into).collect()))
            .await
    }

    /// Replies to your posts, mentions of you and reactions to your entries,
    /// newest first, paged like `timeline`.
    #[uniffi::method(default(limit = 50, before = None))]
    pub async fn notifications(
        &self,
        limit: u32,
        before: Option<String>,
    ) -> Result<NotificationPage, StarlingError> {
        let req = page(limit, before)?;
        self.with_node(move |n| Ok(n.notifications(req)?.into()))
            .await
    }

    /// Full-text search over all stored posts, newest first: every word of
    /// `query` must occur (case- and accent-insensitive; operators are plain
    /// text). Throws `InvalidInput` for a query without words.
    #[uniffi::method(default(limit = 50, before = None))]
    pub async fn search(
        &self,
        query: String,
        limit: u32,
        before: Option<String>,
    ) -> Result<PostPage, StarlingError> {
        let req = page(limit, before)?;
        self.with_node(move |n| Ok(n.search(&query, req)?.into()))
            .await
    }

    /// An author's profile and follow counts. An unknown author gives an
    /// empty profile, not an error.
    pub async fn profile(&self, author_id: String) -> Result<ProfileView, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.profile(a)?.into())).await
    }

    /// The authors `author` follows.
    pub async fn follows(&self, author_id: String) -> Result<Vec<String>, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.follows(a)?.iter().map(ToString::to_string).collect()))
            .await
    }

    /// The known authors who follow `author`.
    pub async fn followers(&self, author_id: String) -> Result<Vec<String>, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.followers(a)?.iter().map(ToString::to_string).collect()))
            .await
    }

    /// Reaction counts of an entry, most frequent first.
    pub async fn reactions(&self, entry_id: String) -> Result<Vec<ReactionCount>, StarlingError> {
        let e = entry(&entry_id)?;
        self.with_node(move |n| Ok(reaction_counts(n.reaction_counts(e)?)))
            .await
    }

    // ----- files --------------------------------------------------------

    /// Writes `author`'s feed to a file at `path` (for sharing it by other
    /// means); returns the number of entries. Throws `NotFound` if nothing
    /// of that author is stored.
    pub async fn export_feed(&self, author_id: String, path: String) -> Result<u64, StarlingError> {
        let a = author(&author_id)?;
        self.with_node(move |n| Ok(n.export_feed(a, Path::new(&path))?))
            .await
    }

    /// Imports a file written by `exportFeed`. All or nothing: a damaged
    /// file or any invalid entry changes nothing and throws `Rejected`.
    pub async fn import_feed(&self, path: String) -> Result<ImportReport, StarlingError> {
        self.with_node(move |n| Ok(n.import(Path::new(&path))?.into()))
            .await
    }
}

/// Counts of live library objects, for leak checks in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Diagnostics {
    /// `StarlingNode` objects not yet released.
    pub live_nodes: u64,
    /// Event subscriptions whose delivery task is still running.
    pub live_subscriptions: u64,
    /// Networks started and not yet completely stopped.
    pub live_networks: u64,
}

/// Counts of live library objects (nodes, event subscriptions, networks):
/// after an app or test released everything, all are 0.
#[uniffi::export]
pub fn diagnostics() -> Diagnostics {
    Diagnostics {
        live_nodes: LIVE_NODES.load(Ordering::Relaxed),
        live_subscriptions: events::LIVE_SUBSCRIPTIONS.load(Ordering::Relaxed),
        live_networks: crate::net::LIVE_NETWORKS.load(Ordering::SeqCst),
    }
}
