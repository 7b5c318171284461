//! [`Node`]: the one object an app (or the `starling` CLI, or the Kotlin and
//! Swift bindings) talks to. It owns the node's data directory and store,
//! holds the local identity, and exposes publishing, ingest and the views.
//!
//! All methods are synchronous and take `&self`; `Node` is `Send + Sync`, so
//! share one instance as `Arc<Node>` between threads. Writes are serialised
//! internally; reads run on a separate connection and do not wait for them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::events::{EventBus, NodeEvent};
use crate::feed::{EncryptionKeyAnnouncement, Payload, Post, Profile};
use crate::identity::at_rest;
use crate::identity::id::{AuthorId, EntryId};
use crate::identity::keys::{Identity, RootSeed};
use crate::store::apply::{self, Effects};
use crate::store::export::FeedFileReader;
use crate::store::{
    DATABASE_FILE, Store, export, graph, ingest, now_ms, publish, queries, secrets,
};

pub use crate::identity::at_rest::{AtRestKey, AtRestKeyProvider};
pub use crate::identity::recovery::RecoveryPhrase;
pub use crate::store::cursor::{Cursor, MAX_PAGE, Page, PageRequest};
pub use crate::store::ingest::{IncomingEntry, IngestReport};
pub use crate::store::queries::{Notification, NotificationKind, PostView, ProfileView};

/// How many entries of an imported file are validated per step. The whole
/// import is still one transaction: all of it is stored, or none.
const IMPORT_CHUNK: usize = 1000;

/// Largest number of authors one post may mention (protocol limit).
const MAX_MENTIONS: usize = 32;

/// A Starling node: one identity, one data directory, one store.
///
/// # Locking and the at-rest key
///
/// [`Node::open`] does not ask the [`AtRestKeyProvider`] for the key. The
/// key is needed only to unseal the identity's root seed, which happens the
/// first time something must be signed (publishing, `recovery_phrase`). So
/// read-only use — timelines, search, profiles, `whoami`, ingesting entries
/// from peers, export — works while the key is unavailable (for example
/// before the user unlocked the device). Once unsealed, the identity stays
/// in memory (wiped on drop) for the life of the `Node`, so publishing does
/// not pay for a key lookup each time.
pub struct Node {
    data_dir: PathBuf,
    store: Store,
    keys: Arc<dyn AtRestKeyProvider>,
    /// The unsealed identity, once something needed it.
    identity: Mutex<Option<Identity>>,
    /// Event channel ([`Node::subscribe`]).
    events: EventBus,
    /// New envelopes and acks of the carrier, for live sync sessions.
    mailbox: crate::mailbox::MailboxBus,
    /// Bumped after every commit that changed a follow or block relation,
    /// so sync sessions learn that their scope may have changed without
    /// looking up each new entry.
    graph_epoch: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

// Apps share one Node between threads; keep that a compile-time guarantee.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Node>();
};

impl Node {
    /// Opens the node stored in `data_dir`, creating the directory and its
    /// database (`starling.db`) if needed and upgrading an older schema.
    ///
    /// `keys` supplies the at-rest key that seals the identity's secrets; it
    /// is only consulted when a secret is needed (see the type docs).
    ///
    /// Errors: [`Error::Io`] if the directory cannot be created,
    /// [`Error::SchemaTooNew`] if a newer Starling wrote the store,
    /// [`Error::Storage`] if the database is unusable (e.g. locked by
    /// another process for longer than 5 s).
    pub fn open(data_dir: &Path, keys: Arc<dyn AtRestKeyProvider>) -> Result<Node> {
        std::fs::create_dir_all(data_dir)?;
        let store = Store::open(&data_dir.join(DATABASE_FILE))?;
        Ok(Node {
            data_dir: data_dir.to_owned(),
            store,
            keys,
            identity: Mutex::new(None),
            events: EventBus::new(),
            mailbox: crate::mailbox::MailboxBus::default(),
            graph_epoch: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The data directory this node lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of the SQLite database file (`<data_dir>/starling.db`).
    pub fn database_path(&self) -> PathBuf {
        self.store.path().to_owned()
    }

    /// The underlying store, for benchmarks and tests.
    #[doc(hidden)]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The at-rest key, for the network layer's sealed device key.
    pub(crate) fn at_rest_key(&self) -> Result<AtRestKey> {
        self.keys.at_rest_key()
    }

    /// The unsealed identity, for signing the network's DHT records.
    pub(crate) fn signing_identity(&self) -> Result<Identity> {
        self.unlocked()
    }

    // ----- identity -------------------------------------------------------

    /// Whether an identity was created or restored in this data dir.
    pub fn has_identity(&self) -> Result<bool> {
        Ok(self.store.read(secrets::identity)?.is_some())
    }

    /// Creates a new identity and starts its feed.
    ///
    /// Publishes the identity's encryption key announcement (its X25519 key,
    /// bound to the feed key by a signature) as entry 1, then, if `name` is
    /// given, a profile with that display name. The root seed is stored only
    /// sealed with the at-rest key.
    ///
    /// Returns the new author id and the 24-word recovery phrase: show the
    /// phrase to the user once so they can write it down; it is the only way
    /// to restore the identity on another device. It can be shown again
    /// later with [`Node::recovery_phrase`].
    ///
    /// Errors: [`Error::IdentityExists`] if this data dir already has one;
    /// [`Error::Locked`] if the at-rest key is unavailable;
    /// [`Error::InvalidInput`] if `name` is longer than 64 bytes.
    pub fn create_identity(&self, name: Option<&str>) -> Result<(AuthorId, RecoveryPhrase)> {
        if self.has_identity()? {
            return Err(Error::IdentityExists);
        }
        let identity = Identity::generate()?;
        let phrase = RecoveryPhrase::from_seed(identity.seed());
        self.install_identity(identity, true, name)?;
        let author = self.whoami()?;
        Ok((author, phrase))
    }

    /// Restores an identity from its 24-word recovery phrase.
    ///
    /// The seed is stored sealed like a created one. If this store already
    /// holds entries of that author (for example after syncing them from
    /// peers), publishing continues that feed. Nothing is published here:
    /// **sync the old feed from peers before publishing**, otherwise the
    /// first new entry starts the feed again at position 1, which peers that
    /// hold the old feed will see as a fork.
    ///
    /// Errors: [`Error::Crypto`] for a phrase with a wrong word, word count
    /// or checksum (the message says which; the store is unchanged);
    /// [`Error::IdentityExists`] if this data dir has a different identity
    /// (restoring the same one again is allowed); [`Error::Locked`] if the
    /// at-rest key is unavailable.
    pub fn restore_identity(&self, phrase: &str) -> Result<AuthorId> {
        let seed = RecoveryPhrase::parse(phrase)?.to_seed()?;
        let identity = Identity::from_seed(seed);
        if let Some(existing) = self.store.read(secrets::identity)?
            && existing != identity.author_id()
        {
            return Err(Error::IdentityExists);
        }
        self.install_identity(identity, false, None)?;
        self.whoami()
    }

    /// Seals and stores `identity`, records its author id and, for a new
    /// identity, publishes its first entries — all in one transaction.
    fn install_identity(
        &self,
        identity: Identity,
        new_feed: bool,
        name: Option<&str>,
    ) -> Result<()> {
        let key = self.keys.at_rest_key()?;
        let sealed = at_rest::seal(&key, secrets::ROOT_SEED, identity.seed().as_bytes())?;
        let author = identity.author_id();
        let now = now_ms();
        let effects = self.store.write(|tx| {
            match secrets::identity(tx)? {
                Some(existing) if existing != author => return Err(Error::IdentityExists),
                Some(_) if new_feed => return Err(Error::IdentityExists),
                _ => {}
            }
            secrets::put_sealed(tx, secrets::ROOT_SEED, &sealed)?;
            secrets::set_identity(tx, &author)?;
            let mut effects = Effects::default();
            if new_feed {
                let announcement = Payload::EncryptionKey(EncryptionKeyAnnouncement {
                    x25519_public: identity.x25519_public(),
                    created_at_ms: now,
                    binding_signature: crate::identity::binding::sign_x25519_binding(
                        &identity, now,
                    ),
                });
                effects.merge(
                    publish::publish_in_tx(tx, identity.signing_key(), &announcement, now)?.effects,
                );
                if let Some(name) = name {
                    let profile = Payload::Profile(Profile {
                        name: name.to_owned(),
                        about: String::new(),
                        avatar: None,
                    });
                    effects.merge(
                        publish::publish_in_tx(tx, identity.signing_key(), &profile, now)?.effects,
                    );
                }
            }
            Ok(effects)
        })?;
        *self.identity_slot() = Some(identity);
        self.after_write(effects)
    }

    fn identity_slot(&self) -> MutexGuard<'_, Option<Identity>> {
        // A panic while holding this lock cannot leave a half-set identity.
        self.identity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The unsealed identity, unsealing it with the at-rest key on first use.
    fn unlocked(&self) -> Result<Identity> {
        let mut slot = self.identity_slot();
        if let Some(identity) = slot.as_ref() {
            return Ok(identity.clone());
        }
        let author = self.whoami()?;
        let sealed = self
            .store
            .read(|c| secrets::get_sealed(c, secrets::ROOT_SEED))?
            .ok_or_else(|| {
                Error::Locked("the identity's sealed seed is missing from the store".into())
            })?;
        let key = self.keys.at_rest_key()?;
        let seed = at_rest::open(&key, secrets::ROOT_SEED, &sealed)?;
        let identity = Identity::from_seed(RootSeed::from_slice(&seed)?);
        if identity.author_id() != author {
            return Err(Error::Locked(
                "the sealed seed does not belong to this node's identity".into(),
            ));
        }
        *slot = Some(identity.clone());
        Ok(identity)
    }

    /// The identity's 24-word recovery phrase, for showing it to the user
    /// again. Needs the at-rest key. Never log or store the result.
    ///
    /// Errors: [`Error::NoIdentity`]; [`Error::Locked`] if the at-rest key
    /// is unavailable or wrong.
    pub fn recovery_phrase(&self) -> Result<RecoveryPhrase> {
        Ok(RecoveryPhrase::from_seed(self.unlocked()?.seed()))
    }

    /// This node's author id (`stl1…`). Does not need the at-rest key.
    ///
    /// Errors: [`Error::NoIdentity`] before one was created or restored.
    pub fn whoami(&self) -> Result<AuthorId> {
        self.store.read(secrets::identity)?.ok_or(Error::NoIdentity)
    }

    // ----- publishing -----------------------------------------------------

    /// Signs `payload` as the next entry of this node's feed and stores it.
    /// When this returns `Ok`, the entry is durably on disk (it survives a
    /// crash or power loss) and can be replicated.
    ///
    /// The entry is dated with the current time, or with the previous
    /// entry's time if the device clock went backwards.
    ///
    /// Errors: [`Error::NoIdentity`]; [`Error::Locked`] if the identity must
    /// be unsealed and the key is unavailable; [`Error::InvalidInput`] if the
    /// payload breaks a limit (e.g. text over 8192 bytes) or a rule (deleting
    /// someone else's entry, following yourself); [`Error::NotFound`] when
    /// deleting an entry that is not stored.
    pub fn publish(&self, payload: Payload) -> Result<EntryId> {
        let identity = self.unlocked()?;
        let published = self.store.write(|tx| {
            let out = publish::publish_in_tx(tx, identity.signing_key(), &payload, now_ms())?;
            self.events.note_local([out.id]);
            Ok(out)
        })?;
        self.after_write(published.effects)?;
        self.events.emit(NodeEvent::EntryAdded {
            id: published.id,
            author: identity.author_id(),
            seq: published.seq,
            own: true,
        });
        Ok(published.id)
    }

    /// Publishes a post. For a reply, pass the post replied to as
    /// `reply_to`; the thread root is filled in from it. Authors mentioned as
    /// `@stl1…` in the text are recorded as mentions (and notified).
    ///
    /// Errors: as [`Node::publish`]; [`Error::InvalidInput`] for empty text
    /// or text over 8192 bytes.
    pub fn post(&self, text: &str, reply_to: Option<EntryId>) -> Result<EntryId> {
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("a post needs some text".into()));
        }
        let root = match reply_to {
            Some(parent) => Some(self.store.read(|c| thread_root_of(c, &parent))?),
            None => None,
        };
        self.publish(Payload::Post(Post {
            text: text.to_owned(),
            reply_to,
            root,
            mentions: parse_mentions(text),
            attachments: Vec::new(),
        }))
    }

    /// Reacts to an entry with `emoji` (1 to 64 bytes, usually one emoji).
    pub fn react(&self, target: EntryId, emoji: &str) -> Result<EntryId> {
        self.publish(Payload::Reaction {
            target,
            emoji: emoji.to_owned(),
        })
    }

    /// Follows `author`: their posts appear in the timeline and their feed
    /// (and, by default, the feeds they follow) are replicated.
    pub fn follow(&self, author: AuthorId) -> Result<EntryId> {
        self.publish(Payload::Follow(author))
    }

    /// Stops following `author`.
    pub fn unfollow(&self, author: AuthorId) -> Result<EntryId> {
        self.publish(Payload::Unfollow(author))
    }

    /// Blocks `author`: everything stored of their feed is removed from this
    /// device, their entries are refused from then on, and they are left out
    /// of every view and of replication. The block itself is a public entry
    /// of your feed.
    pub fn block(&self, author: AuthorId) -> Result<EntryId> {
        self.publish(Payload::Block(author))
    }

    /// Lifts a block. The author's feed is fetched again by the next sync.
    pub fn unblock(&self, author: AuthorId) -> Result<EntryId> {
        self.publish(Payload::Unblock(author))
    }

    /// Updates the profile. `None` keeps the current value, `Some("")`
    /// clears it; the avatar is kept.
    pub fn set_profile(&self, name: Option<String>, about: Option<String>) -> Result<EntryId> {
        let me = self.whoami()?;
        let current = self.store.read(|c| queries::profile(c, &me))?;
        self.publish(Payload::Profile(Profile {
            name: name.or(current.name).unwrap_or_default(),
            about: about.or(current.about).unwrap_or_default(),
            avatar: current.avatar,
        }))
    }

    /// Deletes one of your own entries: publishes a delete entry, and
    /// removes the target's payload from this device (for a post: its text,
    /// search index terms, mentions and attachments; the post remains as a
    /// "deleted" placeholder in threads). Peers do the same when they receive
    /// the delete. The removed text does not remain anywhere in the database
    /// files.
    ///
    /// Errors: [`Error::NotFound`] if the entry is not stored;
    /// [`Error::InvalidInput`] if it is someone else's (use [`Node::hide`]).
    pub fn delete(&self, target: EntryId) -> Result<EntryId> {
        self.publish(Payload::Delete(target))
    }

    /// Hides any entry from your own views on this device (timeline, feeds,
    /// threads, search, notifications). Local only: nothing is published and
    /// the entry is still stored and replicated.
    pub fn hide(&self, target: EntryId) -> Result<()> {
        self.store.write(|tx| {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO hidden (entry_id, hidden_at) VALUES (?1, ?2)",
            )?
            .execute(rusqlite::params![
                target.as_bytes(),
                crate::store::to_sql_int(now_ms())?
            ])?;
            Ok(())
        })
    }

    // ----- views ----------------------------------------------------------

    /// The home timeline: your posts and those of the authors you follow,
    /// newest first, without hidden posts or blocked authors. Deleted posts
    /// appear with `deleted = true` and `text = None`.
    ///
    /// Pass `PageRequest { limit, before: None }` for the newest page, then
    /// the returned `next` cursor for older pages. Errors:
    /// [`Error::InvalidInput`] for a limit outside 1..=200;
    /// [`Error::NoIdentity`].
    pub fn timeline(&self, page: PageRequest) -> Result<Page<PostView>> {
        let me = self.whoami()?;
        self.store.read(|c| queries::timeline(c, &me, &page))
    }

    /// One author's posts, newest first (hidden posts left out).
    pub fn feed(&self, author: AuthorId, page: PageRequest) -> Result<Page<PostView>> {
        let me = self.me_or_nobody()?;
        self.store.read(|c| queries::feed(c, &me, &author, &page))
    }

    /// A thread: the root post first, then all replies in it, oldest first.
    ///
    /// Errors: [`Error::NotFound`] if the root post is not stored.
    pub fn thread(&self, root: EntryId) -> Result<Vec<PostView>> {
        let me = self.me_or_nobody()?;
        self.store.read(|c| queries::thread(c, &me, &root))
    }

    /// Replies to your posts, mentions of you and reactions to your entries,
    /// newest first.
    pub fn notifications(&self, page: PageRequest) -> Result<Page<Notification>> {
        let me = self.whoami()?;
        self.store.read(|c| queries::notifications(c, &me, &page))
    }

    /// Full-text search over the text of all stored posts, newest first.
    /// Every word must occur (case- and accent-insensitive); punctuation and
    /// search operators in `query` are treated as plain text.
    ///
    /// Errors: [`Error::InvalidInput`] if `query` has no words or is over
    /// 1024 bytes.
    pub fn search(&self, query: &str, page: PageRequest) -> Result<Page<PostView>> {
        let me = self.me_or_nobody()?;
        // Own posts (from this process or a CLI beside it) may still wait
        // for the full-text index: index them first, so a search always
        // sees every stored post.
        let (through, newest) = self.store.read(apply::search_index_bounds)?;
        if newest > through {
            self.store
                .write(|tx| apply::index_pending_posts(tx).map(|_| ()))?;
        }
        self.store.read(|c| queries::search(c, &me, query, &page))
    }

    /// An author's latest profile (name, about, avatar), how many authors
    /// they follow and are followed by (as far as this node knows), and
    /// whether their feed is known to have forked. An unknown author gives
    /// an empty profile, not an error.
    pub fn profile(&self, author: AuthorId) -> Result<ProfileView> {
        self.store.read(|c| queries::profile(c, &author))
    }

    /// The authors `author` currently follows.
    pub fn follows(&self, author: AuthorId) -> Result<Vec<AuthorId>> {
        self.store.read(|c| graph::follows(c, &author))
    }

    /// The authors known to this node that currently follow `author`.
    pub fn followers(&self, author: AuthorId) -> Result<Vec<AuthorId>> {
        self.store.read(|c| graph::followers(c, &author))
    }

    /// Reaction counts for an entry: `(emoji, number of authors)`, most
    /// frequent first.
    pub fn reaction_counts(&self, entry: EntryId) -> Result<Vec<(String, u64)>> {
        self.store.read(|c| queries::reaction_counts(c, &entry))
    }

    /// The feeds within `n` follow hops of this node's identity: your own
    /// (first), those you follow (1 hop), those they follow (2 hops), ...
    /// Authors you block are excluded, and not followed through. This is the
    /// set of feeds sync replicates; 2 is the usual `n`.
    pub fn feeds_within_hops(&self, n: u32) -> Result<Vec<AuthorId>> {
        let me = self.whoami()?;
        self.store.read(|c| graph::feeds_within_hops(c, &me, n))
    }

    // ----- replication ----------------------------------------------------

    /// Writes `author`'s feed (entries in order, with the payloads this
    /// node holds) to a portable file at `path`; returns the number of
    /// entries. Import it elsewhere with [`Node::import`].
    ///
    /// Errors: [`Error::NotFound`] if no entry of `author` is stored;
    /// [`Error::Io`].
    pub fn export_feed(&self, author: AuthorId, path: &Path) -> Result<u64> {
        self.store.read(|c| export::export_feed(c, &author, path))
    }

    /// Imports a file written by [`Node::export_feed`]. All or nothing: a
    /// corrupt file or any invalid entry leaves the store unchanged. A feed
    /// this store holds nothing of may start at any seq: the exporting node
    /// may hold only the newest part of it (sync fetches newest first), and
    /// its oldest entry then becomes a tentative head, as in sync
    /// (docs/PROTOCOL.md §6.4); older history arrives later by sync.
    ///
    /// Errors: [`Error::Decode`] for a damaged or foreign file;
    /// [`Error::BatchRejected`] (with the entry's position in the file) for
    /// an invalid entry; [`Error::Io`].
    pub fn import(&self, path: &Path) -> Result<IngestReport> {
        let mut reader = FeedFileReader::open(path)?;
        let mut added = Vec::new();
        let (report, effects) = self.store.write(|tx| {
            let me = secrets::identity(tx)?;
            let mut report = IngestReport::default();
            let mut effects = Effects::default();
            let mut offset = 0;
            loop {
                let chunk = reader.chunk(IMPORT_CHUNK)?;
                if chunk.is_empty() {
                    break;
                }
                let out = ingest::ingest_with_mode(
                    tx,
                    &chunk,
                    offset,
                    me,
                    now_ms(),
                    ingest::IngestMode::Import,
                )?;
                report.add(&out.report);
                effects.merge(out.effects);
                self.events.note_local(out.added.iter().map(|a| a.0));
                added.extend(out.added);
                offset += chunk.len();
            }
            Ok((report, effects))
        })?;
        self.after_write(effects)?;
        self.announce(&added);
        Ok(report)
    }

    /// Stores entries received from peers, from one or many authors.
    ///
    /// The batch is atomic: every entry is checked (format, signature,
    /// payload length and hash, timestamp window, chain continuity with the
    /// stored feed and with earlier entries of the batch) and if any fails,
    /// nothing is stored and [`Error::BatchRejected`] names the entry and
    /// the reason. Entries already held are counted as duplicates; a valid
    /// second entry for a position already held is kept as fork evidence
    /// (the feed is then reported as forked) and never replaces the first;
    /// entries of blocked authors are counted and dropped.
    pub fn ingest(&self, batch: Vec<IncomingEntry>) -> Result<IngestReport> {
        if batch.is_empty() {
            return Ok(IngestReport::default());
        }
        let out = self.ingest_with(&batch, ingest::IngestMode::Strict)?;
        Ok(out.report)
    }

    /// Ingest for peer sync: may start a feed at a tentative head and skips
    /// entries that no longer fit (see [`ingest::IngestMode::Sync`]).
    pub(crate) fn ingest_from_peer(
        &self,
        batch: &[IncomingEntry],
    ) -> Result<ingest::IngestOutcome> {
        self.ingest_with(batch, ingest::IngestMode::Sync)
    }

    fn ingest_with(
        &self,
        batch: &[IncomingEntry],
        mode: ingest::IngestMode,
    ) -> Result<ingest::IngestOutcome> {
        let mut out = self.store.write(|tx| {
            let me = secrets::identity(tx)?;
            let out = ingest::ingest_with_mode(tx, batch, 0, me, now_ms(), mode)?;
            self.events.note_local(out.added.iter().map(|a| a.0));
            Ok(out)
        })?;
        self.after_write(std::mem::take(&mut out.effects))?;
        self.announce(&out.added);
        Ok(out)
    }

    // ----- events ---------------------------------------------------------

    /// Subscribes to the node's events ([`NodeEvent`]): new entries (own,
    /// replicated, or written by another process while
    /// `SyncEngine::watch_external_writes` runs), peers, sync progress and
    /// blobs. A receiver that falls more than
    /// [`crate::events::EVENT_CAPACITY`] events behind gets
    /// `RecvError::Lagged` and should refresh its views.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Emits an event to every subscriber. Used by the network layer for
    /// peer and blob events; never blocks.
    pub fn emit(&self, event: NodeEvent) {
        self.events.emit(event);
    }

    pub(crate) fn event_bus(&self) -> &EventBus {
        &self.events
    }

    /// How many committed writes changed the social graph so far (see
    /// `graph_epoch` on [`Node`]).
    pub(crate) fn graph_epoch(&self) -> u64 {
        self.graph_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that the social graph changed: called after the commit and
    /// before the entries' events are emitted.
    pub(crate) fn note_graph_change(&self) {
        self.graph_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The carrier's notification channel (core/src/mailbox).
    pub(crate) fn mailbox_bus(&self) -> &crate::mailbox::MailboxBus {
        &self.mailbox
    }

    // ----- messaging --------------------------------------------------------

    /// Runs `f` with this node's end-to-end [`Messaging`] engine (see
    /// `core/src/messaging`), e.g. `node.with_messaging(|m| m.encrypt_dm(..))`.
    /// Envelopes it produces wait in the outbox; [`Node::flush_outbox`]
    /// (called by running sync sessions too) hands them to the carrier.
    ///
    /// Errors: [`Error::NoIdentity`]; [`Error::Locked`] without the at-rest
    /// key (it seals every messaging secret).
    ///
    /// [`Messaging`]: crate::messaging::Messaging
    pub fn with_messaging<T>(
        &self,
        f: impl FnOnce(&crate::messaging::Messaging<'_>) -> T,
    ) -> Result<T> {
        let identity = self.unlocked()?;
        let key = self.keys.at_rest_key()?;
        let m = crate::messaging::Messaging::new(&self.store, &identity, key);
        Ok(f(&m))
    }

    /// Hands queued outgoing envelopes to the carrier so live sync sessions
    /// push them now; returns how many. Needs no key.
    pub fn flush_outbox(&self) -> Result<usize> {
        crate::mailbox::flush_outbox(self)
    }

    /// Signs `message` with the identity key (for the sync Hello, whose
    /// bytes are domain-separated by the caller). Needs the at-rest key the
    /// first time, like publishing.
    pub(crate) fn sign_with_identity(&self, message: &[u8]) -> Result<[u8; 64]> {
        use ed25519_dalek::Signer;
        Ok(self.unlocked()?.signing_key().sign(message).to_bytes())
    }

    /// Emits `EntryAdded` for entries that were just committed.
    fn announce(&self, added: &[(EntryId, AuthorId, u64)]) {
        if added.is_empty() {
            return;
        }
        let me = self.store.read(secrets::identity).ok().flatten();
        for (id, author, seq) in added {
            self.events.emit(NodeEvent::EntryAdded {
                id: *id,
                author: *author,
                seq: *seq,
                own: Some(*author) == me,
            });
        }
    }

    // ----- internals ------------------------------------------------------

    /// After content was erased, push it out of the WAL file too.
    fn after_write(&self, effects: Effects) -> Result<()> {
        if effects.graph_changed {
            self.note_graph_change();
        }
        if effects.erased_content {
            self.store.checkpoint_truncate()?;
        }
        Ok(())
    }

    /// The local identity, or an id no feed can have (all zeros is not a
    /// valid Ed25519 key) so views work before an identity exists.
    fn me_or_nobody(&self) -> Result<AuthorId> {
        Ok(self
            .store
            .read(secrets::identity)?
            .unwrap_or(AuthorId::from_bytes([0; 32])))
    }
}

/// The root of the thread `parent` belongs to: its own root, or itself.
fn thread_root_of(conn: &rusqlite::Connection, parent: &EntryId) -> Result<EntryId> {
    use rusqlite::OptionalExtension;
    let root: Option<Option<Vec<u8>>> = conn
        .prepare_cached(
            "SELECT p.root FROM entries e JOIN posts p ON p.rowid = e.rowid
             WHERE e.id = ?1",
        )?
        .query_row([parent.as_bytes()], |r| r.get(0))
        .optional()?;
    match root.flatten() {
        Some(bytes) => EntryId::from_slice(&bytes),
        // The parent is a thread root, or not stored (then it is the best
        // guess we have).
        None => Ok(*parent),
    }
}

/// Author ids written as `@stl1…` in a post's text, first occurrences
/// first, without repeats, at most 32.
pub(crate) fn parse_mentions(text: &str) -> Vec<AuthorId> {
    let mut out: Vec<AuthorId> = Vec::new();
    for (i, _) in text.match_indices("@stl1") {
        let candidate: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Ok(author) = candidate.parse::<AuthorId>()
            && !out.contains(&author)
        {
            out.push(author);
            if out.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::identity::at_rest::InMemoryKeyProvider;
    use crate::store::testutil::{Author, bare_node, dump, node};

    /// A provider whose key is not available (device still locked).
    struct LockedKeys;
    impl AtRestKeyProvider for LockedKeys {
        fn at_rest_key(&self) -> Result<AtRestKey> {
            Err(Error::Locked("device locked".into()))
        }
    }

    fn all_db_bytes(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with(DATABASE_FILE) {
                out.extend(std::fs::read(&path).unwrap());
            }
        }
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn create_publishes_key_announcement_then_profile() {
        let (_d, node) = bare_node();
        assert!(!node.has_identity().unwrap());
        assert!(matches!(node.whoami(), Err(Error::NoIdentity)));
        assert!(matches!(node.post("x", None), Err(Error::NoIdentity)));
        let (me, phrase) = node.create_identity(Some("Ada")).unwrap();
        assert_eq!(phrase.words().len(), 24);
        assert_eq!(node.whoami().unwrap(), me);
        assert!(matches!(
            node.create_identity(None),
            Err(Error::IdentityExists)
        ));
        let tags: Vec<i64> = node
            .store()
            .read(|c| {
                Ok(c.prepare("SELECT tag FROM entries ORDER BY seq")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .unwrap();
        assert_eq!(tags, [0x09, 0x07]);
        let keys: i64 = node
            .store()
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM encryption_keys", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(keys, 1);
        assert_eq!(node.recovery_phrase().unwrap().expose(), phrase.expose());
    }

    #[test]
    fn the_seed_is_stored_only_sealed_and_read_only_use_needs_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(InMemoryKeyProvider::random().unwrap());
        let (me, phrase) = {
            let node = Node::open(dir.path(), keys.clone()).unwrap();
            let out = node.create_identity(None).unwrap();
            node.post("hello", None).unwrap();
            out
        };
        let seed = RecoveryPhrase::parse(phrase.expose())
            .unwrap()
            .to_seed()
            .unwrap();
        assert!(
            !contains(&all_db_bytes(dir.path()), seed.as_bytes()),
            "clear seed on disk"
        );

        // Without the key: reading works, signing does not.
        let locked = Node::open(dir.path(), Arc::new(LockedKeys)).unwrap();
        assert_eq!(locked.whoami().unwrap(), me);
        assert_eq!(
            locked.timeline(PageRequest::first(5)).unwrap().items.len(),
            1
        );
        assert!(matches!(locked.post("nope", None), Err(Error::Locked(_))));
        // With a wrong key: Locked as well.
        drop(locked);
        let wrong =
            Node::open(dir.path(), Arc::new(InMemoryKeyProvider::random().unwrap())).unwrap();
        assert!(matches!(wrong.recovery_phrase(), Err(Error::Locked(_))));
        drop(wrong);
        // With the right key, after reopening: the feed continues.
        let node = Node::open(dir.path(), keys).unwrap();
        node.post("again", None).unwrap();
        assert_eq!(
            node.feed(me, PageRequest::first(5)).unwrap().items[0].seq,
            3
        );
    }

    #[test]
    fn restore_continues_a_stored_feed_and_bad_phrases_change_nothing() {
        let (_d1, old) = node();
        let phrase = old.recovery_phrase().unwrap();
        let me = old.whoami().unwrap();
        old.post("before the restore", None).unwrap();
        let export = _d1.path().join("feed.starling");
        assert_eq!(old.export_feed(me, &export).unwrap(), 3);

        let (_d2, new) = bare_node();
        let before = dump(new.store());
        let mut words: Vec<String> = phrase.words().iter().map(|w| w.to_string()).collect();
        words.swap(0, 1);
        assert!(matches!(
            new.restore_identity(&words.join(" ")),
            Err(Error::Crypto(_))
        ));
        assert!(matches!(
            new.restore_identity("not a phrase"),
            Err(Error::Crypto(_))
        ));
        assert_eq!(before, dump(new.store()));

        assert_eq!(new.import(&export).unwrap().accepted, 3);
        assert_eq!(new.restore_identity(phrase.expose()).unwrap(), me);
        let id = new.post("after the restore", None).unwrap();
        let feed = new.feed(me, PageRequest::first(5)).unwrap();
        assert_eq!((feed.items[0].id, feed.items[0].seq), (id, 4));
        // Restoring the same identity again is fine; another one is not.
        assert_eq!(new.restore_identity(phrase.expose()).unwrap(), me);
        let (_d3, other) = node();
        let other_phrase = other.recovery_phrase().unwrap();
        assert!(matches!(
            new.restore_identity(other_phrase.expose()),
            Err(Error::IdentityExists)
        ));
    }

    #[test]
    fn store_settings_are_durable_and_reopen_is_idempotent() {
        let (dir, node) = node();
        node.post("persist", None).unwrap();
        let sync: i64 = node
            .store()
            .with_writer(|c| Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?))
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL");
        let mode: String = node
            .store()
            .with_writer(|c| Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))?))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = node
            .store()
            .with_writer(|c| Ok(c.pragma_query_value(None, "foreign_keys", |r| r.get(0))?))
            .unwrap();
        assert_eq!(fk, 1);
        let before = dump(node.store());
        drop(node);
        let again =
            Node::open(dir.path(), Arc::new(InMemoryKeyProvider::random().unwrap())).unwrap();
        assert_eq!(before, dump(again.store()));
        let version = again
            .store()
            .read(crate::store::migrations::schema_version)
            .unwrap();
        assert_eq!(version, crate::store::migrations::SCHEMA_VERSION);
    }

    #[test]
    fn delete_removes_text_fts_and_every_trace_in_the_files() {
        let (dir, node) = node();
        let secret = "xylophonequartz is my secret";
        let id = node.post(secret, None).unwrap();
        node.post("keep this one", None).unwrap();
        assert_eq!(
            node.search("xylophonequartz", PageRequest::first(5))
                .unwrap()
                .items
                .len(),
            1
        );
        assert!(contains(&all_db_bytes(dir.path()), b"xylophonequartz"));

        node.delete(id).unwrap();
        let t = node.timeline(PageRequest::first(5)).unwrap();
        let gone = t.items.iter().find(|p| p.id == id).unwrap();
        assert!(gone.deleted && gone.text.is_none());
        assert!(
            node.search("xylophonequartz", PageRequest::first(5))
                .unwrap()
                .items
                .is_empty()
        );
        let (payloads, fts): (i64, i64) = node
            .store()
            .read(|c| {
                Ok((
                    c.query_row(
                        "SELECT COUNT(*) FROM entries WHERE id = ?1 AND payload IS NOT NULL",
                        [id.as_bytes()],
                        |r| r.get(0),
                    )?,
                    c.query_row(
                        "SELECT COUNT(*) FROM posts_fts WHERE posts_fts MATCH 'xylophonequartz'",
                        [],
                        |r| r.get(0),
                    )?,
                ))
            })
            .unwrap();
        assert_eq!((payloads, fts), (0, 0));
        let bytes = all_db_bytes(dir.path());
        assert!(
            !contains(&bytes, b"xylophonequartz"),
            "deleted text still in the database files"
        );
        assert!(
            contains(&bytes, b"keep this one")
                || node.search("keep", PageRequest::first(1)).is_ok()
        );
        // Only own entries can be deleted; unknown ones are NotFound.
        let mut a = Author::new(4);
        let (theirs, inc) = a.post("theirs");
        node.ingest(vec![inc]).unwrap();
        assert!(matches!(node.delete(theirs), Err(Error::InvalidInput(_))));
        assert!(matches!(
            node.delete(EntryId::from_bytes([1; 32])),
            Err(Error::NotFound(_))
        ));
    }

    /// Own posts not yet in the full-text index, read without catching up.
    fn posts_waiting_for_search(node: &Node) -> i64 {
        node.store()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM posts
                     WHERE rowid > (SELECT indexed_through FROM search_progress)",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    }

    /// Posts matching `word` in the full-text index itself (no catch-up).
    fn indexed_matches(node: &Node, word: &str) -> i64 {
        node.store()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM posts_fts WHERE posts_fts MATCH ?1",
                    [word],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    }

    /// How many posts a search for `word` finds (after its catch-up).
    fn search_hits(node: &Node, word: &str) -> usize {
        node.search(word, PageRequest::first(100))
            .unwrap()
            .items
            .len()
    }

    fn check_search_index_integrity(node: &Node) {
        node.store()
            .write(|tx| {
                tx.execute(
                    "INSERT INTO posts_fts (posts_fts) VALUES ('integrity-check')",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn own_posts_enter_the_search_index_in_batches_and_a_search_catches_up() {
        let (_d, node) = node();
        let search = |q: &str| node.search(q, PageRequest::first(100)).unwrap().items;
        node.post("pelicanfeather one", None).unwrap();
        node.post("pelicanfeather two", None).unwrap();
        // The two commits wrote no index segment...
        assert_eq!(posts_waiting_for_search(&node), 2);
        assert_eq!(indexed_matches(&node, "pelicanfeather"), 0);
        // ...yet a search sees both, having indexed them first.
        assert_eq!(search("pelicanfeather").len(), 2);
        assert_eq!(posts_waiting_for_search(&node), 0);
        assert_eq!(indexed_matches(&node, "pelicanfeather"), 2);

        // A publish that finds a full batch waiting indexes the batch.
        let batch = apply::OWN_POSTS_PER_INDEX_BATCH;
        for i in 1..batch {
            node.post(&format!("heron number {i}"), None).unwrap();
        }
        assert_eq!(posts_waiting_for_search(&node), batch - 1);
        assert_eq!(indexed_matches(&node, "heron"), 0);
        node.post("heron number last", None).unwrap();
        assert_eq!(posts_waiting_for_search(&node), 0);
        assert_eq!(indexed_matches(&node, "heron"), batch);

        // An ingested batch takes waiting own posts along.
        node.post("ibisplume mine", None).unwrap();
        let mut a = Author::new(4);
        node.follow(a.id()).unwrap();
        node.ingest(vec![a.post("ibisplume theirs").1]).unwrap();
        assert_eq!(posts_waiting_for_search(&node), 0);
        assert_eq!(indexed_matches(&node, "ibisplume"), 2);
        check_search_index_integrity(&node);
    }

    #[test]
    fn own_posts_waiting_for_the_index_survive_a_restart_and_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(InMemoryKeyProvider::random().unwrap());
        let node = Node::open(dir.path(), keys.clone()).unwrap();
        node.create_identity(Some("me")).unwrap();
        node.post("cormorantwing before the crash", None).unwrap();
        assert_eq!(posts_waiting_for_search(&node), 1);
        // Nothing indexes on close: the text waits in the posts table.
        drop(node);
        let node = Node::open(dir.path(), keys.clone()).unwrap();
        assert_eq!(posts_waiting_for_search(&node), 1);
        // A second handle on the same store (as the CLI beside `serve`)
        // publishes; this one's search still sees its post.
        let cli = Node::open(dir.path(), keys).unwrap();
        cli.post("cormorantwing from the other process", None)
            .unwrap();
        assert_eq!(search_hits(&node, "cormorantwing"), 2);
        check_search_index_integrity(&node);
    }

    #[test]
    fn deleting_an_own_post_still_waiting_for_the_index_leaves_no_trace() {
        let (dir, node) = node();
        let id = node.post("quetzalsecret vanishes", None).unwrap();
        node.post("quetzal stays", None).unwrap();
        assert_eq!(posts_waiting_for_search(&node), 2);
        node.delete(id).unwrap();
        check_search_index_integrity(&node);
        let found = node
            .search("quetzal", PageRequest::first(10))
            .unwrap()
            .items;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].text.as_deref(), Some("quetzal stays"));
        assert!(!contains(&all_db_bytes(dir.path()), b"quetzalsecret"));
    }

    #[test]
    fn posts_after_a_purge_of_the_newest_rows_still_reach_the_search_index() {
        let (_d, node) = node();
        node.post("my first", None).unwrap();
        let mut a = Author::new(4);
        node.follow(a.id()).unwrap();
        node.ingest(vec![
            a.post("theirs one").1,
            a.post("theirs two").1,
            a.post("theirs three").1,
        ])
        .unwrap();
        // Blocking purges the newest post rows: the next rowids are reused
        // and must not count as indexed.
        node.block(a.id()).unwrap();
        node.post("kingfisherblue after the block", None).unwrap();
        assert_eq!(search_hits(&node, "kingfisherblue"), 1);
        check_search_index_integrity(&node);
    }

    #[test]
    fn a_post_whose_payload_arrives_after_the_index_passed_its_entry_is_searchable() {
        let (_d, node) = node();
        let mut a = Author::new(4);
        node.follow(a.id()).unwrap();
        let (_, late) = a.post("albatrosswing arrives late");
        let header_only = IncomingEntry {
            entry_bytes: late.entry_bytes.clone(),
            payload: None,
        };
        // The entry without its post, then newer ones: the index moves on,
        // and the post that arrives later must still be indexed.
        node.ingest(vec![header_only, a.post("albatross filler").1])
            .unwrap();
        assert_eq!(posts_waiting_for_search(&node), 0);
        node.ingest(vec![late]).unwrap();
        assert_eq!(search_hits(&node, "albatrosswing"), 1);
        check_search_index_integrity(&node);
    }

    #[test]
    fn an_author_feed_pages_in_feed_order_even_within_one_millisecond() {
        let (_d, node) = node();
        let me = node.whoami().unwrap();
        // Published in a tight loop: many share a millisecond, where
        // (time, id) order would differ from the order written.
        let written: Vec<EntryId> = (0..25)
            .map(|i| node.post(&format!("post {i}"), None).unwrap())
            .collect();
        let mut seen = Vec::new();
        let mut page = PageRequest::first(4);
        loop {
            let got = node.feed(me, page.clone()).unwrap();
            seen.extend(got.items.iter().map(|p| p.id));
            match got.next {
                Some(next) => page.before = Some(next),
                None => break,
            }
        }
        let newest_first: Vec<EntryId> = written.into_iter().rev().collect();
        assert_eq!(seen, newest_first);
        // A cursor from another list is refused, not misread.
        let mut a = Author::new(4);
        node.follow(a.id()).unwrap();
        node.ingest(vec![a.post("theirs").1, a.post("theirs again").1])
            .unwrap();
        let theirs = node.feed(a.id(), PageRequest::first(1)).unwrap();
        assert_eq!(theirs.items.len(), 1);
        let foreign = PageRequest {
            before: theirs.next,
            ..PageRequest::first(4)
        };
        assert!(matches!(
            node.feed(me, foreign),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn a_feed_held_only_newest_first_exports_and_imports_elsewhere() {
        let mut a = Author::new(4);
        let incoming: Vec<IncomingEntry> =
            (1..=8).map(|i| a.post(&format!("post {i}")).1).collect();
        // As sync leaves it before backfilling: seqs 5..=8 held.
        let (_d, holder) = node();
        holder.ingest_from_peer(&incoming[7..]).unwrap();
        let older: Vec<IncomingEntry> = incoming[4..7].iter().rev().cloned().collect();
        holder.ingest_from_peer(&older).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(holder.export_feed(a.id(), file.path()).unwrap(), 4);

        let (_d2, fresh) = node();
        let report = fresh.import(file.path()).unwrap();
        assert_eq!(report.accepted, 4);
        let feed = fresh.feed(a.id(), PageRequest::first(10)).unwrap();
        let texts: Vec<_> = feed.items.iter().filter_map(|p| p.text.clone()).collect();
        assert_eq!(texts, ["post 8", "post 7", "post 6", "post 5"]);
        // Older history still fits below it, as sync's backfill would add it.
        fresh.ingest_from_peer(&incoming[3..4]).unwrap();
        assert_eq!(
            fresh
                .feed(a.id(), PageRequest::first(10))
                .unwrap()
                .items
                .len(),
            5
        );

        // A store holding the start of the feed still refuses the gap, and
        // keeps nothing of the file.
        let (_d3, partial) = node();
        partial.ingest(incoming[..2].to_vec()).unwrap();
        let before = dump(partial.store());
        assert!(matches!(
            partial.import(file.path()),
            Err(Error::BatchRejected { .. })
        ));
        assert_eq!(before, dump(partial.store()));
    }

    #[test]
    fn a_delete_that_arrives_first_still_wins() {
        let (_d, node) = node();
        let mut a = Author::new(4);
        node.follow(a.id()).unwrap();
        let (target, post) = a.post("regrettable");
        let (_, del) = a.next(&Payload::Delete(target));
        // The delete alone cannot be ingested before its chain predecessor,
        // so the target arrives without payload first (as after a sync of
        // headers), then the delete, then the payload.
        let header_only = IncomingEntry {
            entry_bytes: post.entry_bytes.clone(),
            payload: None,
        };
        node.ingest(vec![header_only, del]).unwrap();
        node.ingest(vec![post]).unwrap();
        let t = node.timeline(PageRequest::first(5)).unwrap();
        assert!(
            t.items
                .iter()
                .all(|p| p.text.as_deref() != Some("regrettable")),
            "{t:?}"
        );
        let payloads: i64 = node
            .store()
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM entries WHERE id = ?1 AND payload IS NOT NULL",
                    [target.as_bytes()],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(payloads, 0);
        assert!(
            node.search("regrettable", PageRequest::first(5))
                .unwrap()
                .items
                .is_empty()
        );
    }

    #[test]
    fn a_post_and_its_delete_in_one_batch_leave_a_consistent_search_index() {
        let (dir, node) = node();
        let mut a = Author::new(4);
        node.follow(a.id()).unwrap();
        // Over the parallel-verify threshold, so the batch takes the same path
        // as sync: many posts indexed together, a delete in the middle.
        let mut batch = Vec::new();
        let (doomed, inc) = a.post("zanzibarquokka must vanish");
        batch.push(inc);
        for i in 0..40 {
            batch.push(a.post(&format!("filler number {i} about quokkas")).1);
        }
        batch.push(a.next(&Payload::Delete(doomed)).1);
        for i in 40..80 {
            batch.push(a.post(&format!("filler number {i} about quokkas")).1);
        }
        node.ingest(batch).unwrap();
        let search = |q: &str| node.search(q, PageRequest::first(100)).unwrap().items;
        assert!(search("zanzibarquokka").is_empty());
        assert_eq!(search("quokkas").len(), 80);
        check_search_index_integrity(&node);
        assert!(!contains(&all_db_bytes(dir.path()), b"zanzibarquokka"));
    }

    #[test]
    fn hidden_entries_leave_my_views_only() {
        let (_d, node) = node();
        let id = node.post("hide me", None).unwrap();
        node.hide(id).unwrap();
        assert!(
            node.timeline(PageRequest::first(5))
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            node.search("hide", PageRequest::first(5))
                .unwrap()
                .items
                .is_empty()
        );
        // Still stored (and so still replicated).
        let me = node.whoami().unwrap();
        let f = node.store().path().with_file_name("out.feed");
        assert_eq!(node.export_feed(me, &f).unwrap(), 3);
    }

    #[test]
    fn feeds_within_hops_follows_two_hops_and_skips_blocks() {
        let (_d, node) = node();
        let me = node.whoami().unwrap();
        let (mut a, mut b, mut c, mut x) = (
            Author::new(1),
            Author::new(2),
            Author::new(3),
            Author::new(5),
        );
        node.follow(a.id()).unwrap();
        node.follow(x.id()).unwrap();
        // a -> b -> c ; a -> x ; x -> (blocked) y
        let y = Author::new(6);
        let batch = vec![
            a.next(&Payload::Follow(b.id())).1,
            b.next(&Payload::Follow(c.id())).1,
            a.next(&Payload::Follow(x.id())).1,
            x.next(&Payload::Follow(y.id())).1,
            c.post("far away").1,
        ];
        node.ingest(batch).unwrap();
        let two = node.feeds_within_hops(2).unwrap();
        assert_eq!(two[0], me);
        for want in [a.id(), b.id(), x.id(), y.id()] {
            assert!(two.contains(&want));
        }
        assert!(!two.contains(&c.id()), "third hop included");
        assert_eq!(node.feeds_within_hops(3).unwrap().len(), 6);
        assert_eq!(node.feeds_within_hops(0).unwrap(), [me]);
        node.block(y.id()).unwrap();
        node.block(b.id()).unwrap();
        let after = node.feeds_within_hops(3).unwrap();
        assert!(!after.contains(&y.id()) && !after.contains(&b.id()));
        assert!(
            !after.contains(&c.id()),
            "followed through a blocked author"
        );
    }

    #[test]
    fn publish_never_rewinds_and_parses_mentions() {
        let (_d, node) = node();
        let me = node.whoami().unwrap();
        let signing = node.unlocked().unwrap();
        let future = now_ms() + 60_000;
        node.store()
            .write(|tx| {
                publish::publish_in_tx(
                    tx,
                    signing.signing_key(),
                    &crate::store::testutil::post("a"),
                    future,
                )
            })
            .unwrap();
        // The clock "goes back": the next entry keeps the previous time.
        node.post("b", None).unwrap();
        let feed = node.feed(me, PageRequest::first(2)).unwrap();
        assert_eq!(feed.items[0].timestamp_ms, future);

        let a = Author::new(1).id();
        let text = format!("hi @{a} and @{a}, not @stl1bogus or @{me}!");
        assert_eq!(parse_mentions(&text), [a, me]);
        let id = node.post(&text, None).unwrap();
        // Same timestamp as the earlier posts (the clock is "behind"), so
        // look it up by id rather than by position.
        let t = node.timeline(PageRequest::first(10)).unwrap();
        let p = t.items.iter().find(|p| p.id == id).unwrap();
        assert_eq!(p.mentions, vec![a, me]);
    }

    #[test]
    fn a_corrupt_or_invalid_import_changes_nothing() {
        let (d, node) = node();
        let mut a = Author::new(1);
        let batch: Vec<_> = (0..2500).map(|i| a.post(&format!("n{i}")).1).collect();
        let (_d2, src) = node_with(batch);
        let file = d.path().join("a.feed");
        assert_eq!(src.export_feed(a.id(), &file).unwrap(), 2500);
        let good = std::fs::read(&file).unwrap();

        let before = dump(node.store());
        // Truncated in the last record: the first 2 chunks were valid.
        std::fs::write(&file, &good[..good.len() - 3]).unwrap();
        assert!(matches!(node.import(&file), Err(Error::Decode(_))));
        assert_eq!(before, dump(node.store()));
        // A bad signature far into the file.
        let mut bad = good.clone();
        let at = bad.len() - 100;
        bad[at] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        assert!(
            matches!(
                node.import(&file),
                Err(Error::BatchRejected { index: 2499, .. })
            ),
            "{:?}",
            node.import(&file)
        );
        assert_eq!(before, dump(node.store()));
        std::fs::write(&file, &good).unwrap();
        assert_eq!(node.import(&file).unwrap().accepted, 2500);
        assert_eq!(node.import(&file).unwrap().duplicates, 2500);
    }

    fn node_with(batch: Vec<IncomingEntry>) -> (tempfile::TempDir, Node) {
        let (d, n) = bare_node();
        n.ingest(batch).unwrap();
        (d, n)
    }
}
