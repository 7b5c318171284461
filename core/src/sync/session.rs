//! One `/starling/sync/1` session over a byte stream: the handshake, then a
//! reader that validates and stores what the peer sends, and a writer that
//! serves what the peer lacks — catch-up first, then live pushes.
//!
//! Guarantees: every received batch is verified and stored atomically by
//! the store's ingest (nothing partial), entries are only accepted for
//! feeds this node asked for, and the writer tracks what the peer holds so
//! nothing is sent twice within a session. Reader and writer never wait on
//! each other, so two peers writing large catch-ups at once cannot deadlock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};

use crate::error::Error;
use crate::events::NodeEvent;
use crate::feed::Entry;
use crate::feed::validate::strict_verifying_key;
use crate::identity::id::{AuthorId, EntryId};
use crate::mailbox::MailboxEvent;
use crate::messaging::envelope::Envelope;
use crate::node::Node;
use crate::store::ingest::IncomingEntry;
use crate::store::replication::{self, FeedState};
use crate::sync::carrier::CarrierState;
use crate::sync::clock::{
    bucket_bits, bucket_digests, digest, note_held, plan_feed, short_id, short_key,
    split_by_buckets,
};
use crate::sync::engine::SyncConfig;
use crate::sync::error::SyncError;
use crate::sync::frame::{HEADER_LEN, MIN_MAX_FRAME, read_frame, write_frame};
use crate::sync::messages::{
    CAP_BUCKETS, CAP_MAILBOX, CAP_MASK, ClockItem, Hello, Message, VERSION, entry_item_len,
    hello_signed_bytes,
};
use crate::sync::scope;

/// How long scope changes are collected before the scope is recomputed.
const SCOPE_DEBOUNCE: Duration = Duration::from_millis(100);
/// Room kept in a frame for the message type and item count.
const FRAME_SLACK: usize = 16;
/// Largest encoded clock item (8-byte id, two 10-byte varints).
const MAX_CLOCK_ITEM: usize = 28;
/// How often one session re-requests feeds whose entries it had to skip.
const MAX_RESYNC_ROUNDS: u32 = 3;
/// Entries messages queued for storing while the next one is read.
const INGEST_QUEUE: usize = 2;
/// Batches that queued up while the previous one was being stored are
/// stored together in one transaction, up to this many entries: a commit
/// writes every page it dirtied (entry ids are random, so each batch
/// touches pages all over the id index) and fsyncs, and grouping shares
/// both among more entries.
const GROUP_COMMIT_MAX: usize = 2048;
/// Fork evidence pairs sent per feed and batch.
const MAX_EVIDENCE_PER_BATCH: usize = 16;

/// Live counters of one session, shared with the engine for `status()`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerStats {
    pub author: Option<AuthorId>,
    pub entries_sent: u64,
    /// New entries stored from this peer.
    pub entries_received: u64,
    /// Every entry the peer sent (stored, duplicate, skipped, refused).
    pub items_received: u64,
    pub duplicates_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Entries the peer announced (Plan) in total.
    pub planned: u64,
    /// Feeds with entries announced by the peer's outstanding plans.
    pub planned_feeds: u64,
    /// Feeds this node asked the peer for.
    pub wants: u64,
    /// The peer finished sending everything asked for (Done) and nothing
    /// was asked since.
    pub caught_up: bool,
}

impl PeerStats {
    pub(crate) fn remaining(&self) -> u64 {
        self.planned.saturating_sub(self.items_received)
    }
}

/// Everything a session needs from its engine.
pub(crate) struct Ctx {
    pub node: Arc<Node>,
    pub config: SyncConfig,
    pub local_peer: String,
    pub remote_peer: String,
    pub initiator: bool,
    pub stats: Arc<Mutex<PeerStats>>,
    pub stop: watch::Receiver<bool>,
    pub scope_epoch: watch::Receiver<u64>,
    /// This session's id within the engine (never 0), so the mailbox does
    /// not echo what came from this peer.
    pub session_id: u64,
}

impl Ctx {
    fn stats(&self) -> MutexGuard<'_, PeerStats> {
        lock(&self.stats)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What each side knows about the other's feeds, shared by reader and
/// writer.
#[derive(Default)]
struct Shared {
    /// Feeds this node asked the peer for; entries of other feeds are
    /// refused.
    my_wants: HashSet<AuthorId>,
    /// What the peer holds of each feed it asked for (kept up to date with
    /// what was sent and received).
    remote: HashMap<AuthorId, FeedState>,
    /// Feeds the peer asked for that this node does not hold (yet), by
    /// short id: served as soon as an entry of theirs arrives.
    remote_unknown: HashMap<[u8; 8], FeedState>,
}

/// Reader → writer notifications.
enum Ctrl {
    Clock(Vec<ClockItem>),
    Resync(Vec<AuthorId>),
    ScopeDirty,
    /// The peer's envelope inventory is complete.
    InventoryDone,
    Eof,
    Fail(SyncError),
}

/// Runs a session to its end: `Ok` when the stream closed or the engine
/// stopped it, `Err` when the peer misbehaved or i/o failed.
pub(crate) async fn run<S>(ctx: Arc<Ctx>, stream: S) -> Result<(), SyncError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Subscribe before the clock snapshot so no entry slips in between.
    let events = ctx.node.subscribe();
    let mailbox = ctx.node.mailbox_bus().subscribe();
    let (mut rd, mut wr) = stream.split();
    let setup = handshake(&ctx, &mut rd, &mut wr).await?;
    let carrier = Arc::new(Mutex::new(CarrierState::new(setup.mailbox, setup.key)));
    let shared = Arc::new(Mutex::new(Shared {
        my_wants: setup.clock.iter().map(|(a, _)| *a).collect(),
        // Identical scope and ranges (all of it, or of equal buckets): the
        // peer holds what we hold.
        remote: setup.same.iter().copied().collect(),
        remote_unknown: HashMap::new(),
    }));
    ctx.stats().wants = setup.clock.len() as u64;
    // Nothing to announce: the peer has nothing to send us.
    ctx.stats().caught_up = setup.announce.is_empty();
    let (tx, rx) = mpsc::unbounded_channel();
    // Batches queue while one is stored and the next is read.
    let (work_tx, work_rx) = mpsc::channel(INGEST_QUEUE);
    let ingester = Ingester {
        ctx: ctx.clone(),
        ctrl: tx.clone(),
        soft_faults: 0,
        skipped: HashSet::new(),
        resync_rounds: 0,
    };
    let mut writer = Writer {
        ctx: ctx.clone(),
        wr,
        key: setup.key,
        send_max: setup.send_max,
        shared: shared.clone(),
        outbox: Outbox::default(),
        scope_dirty: false,
        graph_epoch: ctx.node.graph_epoch(),
        last_scope: Instant::now(),
        carrier: carrier.clone(),
        mailbox: Some(mailbox),
    };
    if !setup.announce.is_empty() {
        writer.send_clock(&setup.announce).await?;
    }
    writer.carrier_opening().await?;
    let reader = Reader {
        ctx: ctx.clone(),
        rd,
        shared,
        ctrl: tx,
        entries: Bucket::new(
            ctx.config.limits.entries_per_sec,
            ctx.config.limits.entries_burst,
        ),
        bytes: Bucket::new(
            ctx.config.limits.bytes_per_sec,
            ctx.config.limits.bytes_burst,
        ),
        clock_messages: 0,
        clock_items: 0,
        key: setup.key,
        wanted_shorts: HashMap::new(),
        wanted_len: 0,
        credit: 0,
        allowance: 0,
        work: work_tx,
        carrier,
    }
    .run(ingester, work_rx);
    let writer = writer.run(rx, events);
    tokio::pin!(reader, writer);
    tokio::select! {
        r = &mut writer => r,
        () = &mut reader => writer.await,
    }
}

struct Setup {
    key: [u8; 32],
    send_max: usize,
    /// Both sides carry envelopes.
    mailbox: bool,
    /// Our whole scope clock.
    clock: Vec<(AuthorId, FeedState)>,
    /// Feeds the peer wants and holds exactly as we do (equal Summary or
    /// equal bucket digests).
    same: Vec<(AuthorId, FeedState)>,
    /// The rest of the clock, announced in Clock messages.
    announce: Vec<(AuthorId, FeedState)>,
}

async fn send_msg<W: AsyncWrite + Unpin>(
    ctx: &Ctx,
    wr: &mut W,
    msg: &Message,
) -> Result<(), SyncError> {
    let n = write_frame(wr, &msg.encode()).await?;
    ctx.stats().bytes_sent += n as u64;
    Ok(())
}

async fn recv_handshake<R: AsyncRead + Unpin>(ctx: &Ctx, rd: &mut R) -> Result<Message, SyncError> {
    let frame = tokio::time::timeout(
        ctx.config.handshake_timeout,
        read_frame(rd, ctx.config.max_frame),
    )
    .await
    .map_err(|_| SyncError::Timeout)??
    .ok_or(SyncError::Closed)?;
    ctx.stats().bytes_received += (frame.len() + HEADER_LEN) as u64;
    Message::decode(&frame).map_err(|e| SyncError::Malformed(e.to_string()))
}

/// Hello (identity proof bound to this connection) and Summary (scope
/// digest) in both directions.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx,
    rd: &mut ReadHalf<S>,
    wr: &mut WriteHalf<S>,
) -> Result<Setup, SyncError> {
    let node = &ctx.node;
    let me = node.whoami()?;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| Error::Crypto(e.to_string()))?;
    let mut hello = Hello {
        version: VERSION,
        author: me,
        nonce,
        // The lowest bit announces the mailbox capability.
        max_frame: (u32::try_from(ctx.config.max_frame).unwrap_or(u32::MAX) & !CAP_MASK)
            | CAP_MAILBOX
            | CAP_BUCKETS,
        signature: [0; 64],
    };
    hello.signature = node.sign_with_identity(&hello_signed_bytes(
        &hello,
        &ctx.local_peer,
        &ctx.remote_peer,
    ))?;
    send_msg(ctx, wr, &Message::Hello(hello)).await?;

    let theirs = match recv_handshake(ctx, rd).await? {
        Message::Hello(h) => h,
        _ => return Err(SyncError::ProtocolViolation("expected Hello".into())),
    };
    if theirs.version != VERSION {
        return Err(SyncError::ProtocolViolation(format!(
            "unsupported protocol version {}",
            theirs.version
        )));
    }
    let key =
        strict_verifying_key(&theirs.author).map_err(|e| SyncError::BadHello(e.to_string()))?;
    let signed = hello_signed_bytes(&theirs, &ctx.remote_peer, &ctx.local_peer);
    key.verify_strict(
        &signed,
        &ed25519_dalek::Signature::from_bytes(&theirs.signature),
    )
    .map_err(|_| SyncError::BadHello("signature does not verify for this connection".into()))?;
    let their_max = (theirs.max_frame & !CAP_MASK) as usize;
    let mailbox = theirs.max_frame & CAP_MAILBOX != 0;
    let buckets = theirs.max_frame & CAP_BUCKETS != 0;
    if their_max < MIN_MAX_FRAME {
        return Err(SyncError::ProtocolViolation(format!(
            "max frame {their_max} is below {MIN_MAX_FRAME}"
        )));
    }
    ctx.stats().author = Some(theirs.author);
    let key = if ctx.initiator {
        short_key(&nonce, &theirs.nonce)
    } else {
        short_key(&theirs.nonce, &nonce)
    };

    let scope = scope::compute(node, ctx.config.hops)?;
    let clock = scope::clock(node, &scope)?;
    let mine = digest(&clock);
    send_msg(
        ctx,
        wr,
        &Message::Summary {
            count: clock.len() as u64,
            digest: mine,
        },
    )
    .await?;
    let (their_count, their_digest) = match recv_handshake(ctx, rd).await? {
        Message::Summary { count, digest } => (count, digest),
        _ => return Err(SyncError::ProtocolViolation("expected Summary".into())),
    };
    let (same, announce) = if their_count == clock.len() as u64 && their_digest == mine {
        (clock.clone(), Vec::new())
    } else if let Some(bits) = bucket_bits(clock.len() as u64, their_count).filter(|_| buckets) {
        // Narrow the difference down to buckets of about four feeds.
        let digests = bucket_digests(&key, &clock, bits);
        send_msg(
            ctx,
            wr,
            &Message::Buckets {
                bits,
                digests: digests.clone(),
            },
        )
        .await?;
        let theirs = match recv_handshake(ctx, rd).await? {
            Message::Buckets { bits: b, digests } if b == bits => digests,
            _ => return Err(SyncError::ProtocolViolation("expected Buckets".into())),
        };
        split_by_buckets(&key, &clock, bits, &digests, &theirs)
    } else {
        (Vec::new(), clock.clone())
    };
    Ok(Setup {
        key,
        mailbox,
        send_max: their_max.min(ctx.config.max_frame & !(CAP_MASK as usize)),
        clock,
        same,
        announce,
    })
}

/// A token bucket for rate limits.
struct Bucket {
    rate: f64,
    burst: f64,
    level: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, burst: u64) -> Bucket {
        Bucket {
            rate: rate as f64,
            burst: burst as f64,
            level: burst as f64,
            last: Instant::now(),
        }
    }

    fn take(&mut self, n: u64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.level = (self.level + refill).min(self.burst);
        self.last = now;
        if self.level >= n as f64 {
            self.level -= n as f64;
            true
        } else {
            false
        }
    }
}

// ----- reader ---------------------------------------------------------------

struct Reader<R> {
    ctx: Arc<Ctx>,
    rd: R,
    shared: Arc<Mutex<Shared>>,
    ctrl: mpsc::UnboundedSender<Ctrl>,
    entries: Bucket,
    bytes: Bucket,
    clock_messages: u32,
    clock_items: u64,
    key: [u8; 32],
    /// Short ids of the feeds this node asked for, for `credit`.
    wanted_shorts: HashMap<[u8; 8], AuthorId>,
    /// `my_wants.len()` when `wanted_shorts` was built.
    wanted_len: usize,
    /// Entries the peer's clocks say it holds of feeds this node asked
    /// for, not yet granted to a Plan.
    credit: u64,
    /// Entries the peer announced in Plans (at most `credit`) and has not
    /// sent yet: requested catch-up, exempt from the entry rate limit.
    allowance: u64,
    /// Batches (and Done) for the [`Ingester`], which stores one while the
    /// next is read and decoded.
    work: mpsc::Sender<Work>,
    carrier: Arc<Mutex<CarrierState>>,
}

/// Reader → ingester, in stream order.
enum Work {
    Entries {
        batch: Vec<IncomingEntry>,
        graph_change: bool,
    },
    Done,
}

/// Stores the peer's batches in order, one at a time, while the reader
/// reads and checks the next (so verification and the commit of one batch
/// overlap the transfer of the next).
struct Ingester {
    ctx: Arc<Ctx>,
    ctrl: mpsc::UnboundedSender<Ctrl>,
    soft_faults: u64,
    skipped: HashSet<AuthorId>,
    resync_rounds: u32,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    async fn run(mut self, ingester: Ingester, work: mpsc::Receiver<Work>) {
        let ctrl = self.ctrl.clone();
        let reading = async move {
            let r = self.run_inner().await;
            // Closes the work queue: the ingester drains it and ends.
            drop(self);
            r
        };
        // The first error (reading or storing) ends the session at once.
        let end = match futures::future::try_join(reading, ingester.run(work)).await {
            Ok(_) => Ctrl::Eof,
            Err(e) => Ctrl::Fail(e),
        };
        let _ = ctrl.send(end);
    }

    async fn run_inner(&mut self) -> Result<(), SyncError> {
        loop {
            let Some(body) = read_frame(&mut self.rd, self.ctx.config.max_frame).await? else {
                return Ok(());
            };
            let n = (body.len() + HEADER_LEN) as u64;
            self.ctx.stats().bytes_received += n;
            if !self.bytes.take(n) {
                return Err(SyncError::Flood("byte rate limit".into()));
            }
            match Message::decode(&body).map_err(|e| SyncError::Malformed(e.to_string()))? {
                Message::Hello(_) | Message::Summary { .. } | Message::Buckets { .. } => {
                    return Err(SyncError::ProtocolViolation(
                        "handshake message after the handshake".into(),
                    ));
                }
                Message::Clock(items) => {
                    let limits = &self.ctx.config.limits;
                    self.clock_messages += 1;
                    self.clock_items += items.len() as u64;
                    if self.clock_messages > limits.max_clock_messages
                        || self.clock_items > limits.max_clock_items
                    {
                        return Err(SyncError::Flood("too many clock announcements".into()));
                    }
                    self.add_credit(&items);
                    self.send_ctrl(Ctrl::Clock(items))?;
                }
                Message::Plan { entries, feeds } => {
                    let grant = entries.min(self.credit);
                    self.credit -= grant;
                    self.allowance = self.allowance.saturating_add(grant);
                    let mut s = self.ctx.stats();
                    s.planned = s.planned.max(s.items_received).saturating_add(entries);
                    s.planned_feeds = s.planned_feeds.saturating_add(feeds);
                    s.caught_up = false;
                }
                Message::Done => {
                    // Everything planned so far was sent: later entries are
                    // unrequested unless a new Plan announces them.
                    self.allowance = 0;
                    self.queue(Work::Done).await?;
                }
                Message::Entries(batch) => self.on_entries(batch).await?,
                Message::Inventory { shorts, last } => {
                    if lock(&self.carrier).on_inventory(shorts, last)? {
                        self.send_ctrl(Ctrl::InventoryDone)?;
                    }
                }
                Message::Envelopes(items) => self.on_envelopes(items).await?,
                Message::Acks(secrets) => self.on_acks(secrets).await?,
            }
        }
    }

    /// Envelopes from the peer: all decoded first (one bad envelope refuses
    /// the message), then each stored, offered to this node's messaging and
    /// announced to the other sessions.
    async fn on_envelopes(&mut self, items: Vec<Vec<u8>>) -> Result<(), SyncError> {
        if !self.entries.take(items.len() as u64) {
            return Err(SyncError::Flood("envelope rate limit".into()));
        }
        let mut decoded = Vec::with_capacity(items.len());
        for (i, bytes) in items.into_iter().enumerate() {
            let env = Envelope::decode(&bytes)
                .map_err(|e| SyncError::Malformed(format!("envelope {i}: {e}")))?;
            decoded.push((Envelope::hash_bytes(&bytes), bytes, env));
        }
        let hashes: Vec<[u8; 32]> = decoded.iter().map(|d| d.0).collect();
        lock(&self.carrier).note_received(&hashes, &[])?;
        let node = self.ctx.node.clone();
        let origin = self.ctx.session_id;
        tokio::task::spawn_blocking(move || {
            for (_, bytes, env) in decoded {
                crate::mailbox::receive_from_peer(&node, &bytes, &env, origin)?;
            }
            Ok::<(), Error>(())
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
        Ok(())
    }

    /// Acks from the peer: drop what they name, pass them on.
    async fn on_acks(&mut self, secrets: Vec<[u8; 32]>) -> Result<(), SyncError> {
        lock(&self.carrier).note_received(&[], &secrets)?;
        let node = self.ctx.node.clone();
        let origin = self.ctx.session_id;
        tokio::task::spawn_blocking(move || {
            for s in secrets {
                crate::mailbox::ack_from_peer(&node, &s, origin)?;
            }
            Ok::<(), Error>(())
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
        Ok(())
    }

    fn send_ctrl(&self, c: Ctrl) -> Result<(), SyncError> {
        // The writer only goes away when the session ends.
        self.ctrl.send(c).map_err(|_| SyncError::Closed)
    }

    /// The peer announced what it holds: what it holds of feeds this node
    /// asked for may come as requested catch-up (granted to its Plans).
    fn add_credit(&mut self, items: &[ClockItem]) {
        {
            let sh = lock(&self.shared);
            if sh.my_wants.len() != self.wanted_len {
                self.wanted_len = sh.my_wants.len();
                self.wanted_shorts = sh
                    .my_wants
                    .iter()
                    .map(|a| (short_id(&self.key, a), *a))
                    .collect();
            }
        }
        for it in items {
            if it.latest > 0 && self.wanted_shorts.contains_key(&it.short) {
                self.credit = self.credit.saturating_add(it.latest - it.low + 1);
            }
        }
    }

    async fn on_entries(&mut self, batch: Vec<IncomingEntry>) -> Result<(), SyncError> {
        // Requested catch-up (announced by a Plan, backed by the peer's
        // clock) is not a flood; everything else (live pushes, evidence,
        // anything beyond the Plan) is rate limited.
        let n = batch.len() as u64;
        let exempt = n.min(self.allowance);
        self.allowance -= exempt;
        if !self.entries.take(n - exempt) {
            return Err(SyncError::Flood("entry rate limit".into()));
        }
        let mut positions = Vec::with_capacity(batch.len());
        for (i, item) in batch.iter().enumerate() {
            let e = Entry::decode(&item.entry_bytes)
                .map_err(|e| SyncError::InvalidEntries(format!("entry {i}: {e}")))?;
            positions.push((e.author, e.seq));
        }
        {
            let mut sh = lock(&self.shared);
            if let Some((a, _)) = positions.iter().find(|(a, _)| !sh.my_wants.contains(a)) {
                return Err(SyncError::ProtocolViolation(format!(
                    "entries of {a}, which this node did not ask for"
                )));
            }
            // The peer holds what it sends: never send it back (before the
            // ingest, whose events the writer sees).
            for (a, seq) in &positions {
                if let Some(st) = sh.remote.get_mut(a) {
                    note_held(st, *seq);
                }
            }
        }
        // Follow / unfollow / block / unblock can change the scope.
        let graph_change = batch.iter().any(|i| {
            matches!(
                i.payload.as_ref().and_then(|p| p.first()),
                Some(0x03..=0x06)
            )
        });
        self.queue(Work::Entries {
            batch,
            graph_change,
        })
        .await
    }

    async fn queue(&self, w: Work) -> Result<(), SyncError> {
        // The ingester only goes away when it failed (and reports that).
        self.work.send(w).await.map_err(|_| SyncError::Closed)
    }
}

impl Ingester {
    async fn run(mut self, mut work: mpsc::Receiver<Work>) -> Result<(), SyncError> {
        while let Some(w) = work.recv().await {
            match w {
                Work::Entries {
                    mut batch,
                    mut graph_change,
                } => {
                    // Group commit (see GROUP_COMMIT_MAX), in stream order.
                    let mut done_follows = false;
                    while batch.len() < GROUP_COMMIT_MAX {
                        match work.try_recv() {
                            Ok(Work::Entries {
                                batch: more,
                                graph_change: more_graph,
                            }) => {
                                batch.extend(more);
                                graph_change |= more_graph;
                            }
                            Ok(Work::Done) => {
                                done_follows = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.ingest(batch, graph_change).await?;
                    if done_follows {
                        self.on_done()?;
                    }
                }
                Work::Done => self.on_done()?,
            }
        }
        Ok(())
    }

    fn send_ctrl(&self, c: Ctrl) -> Result<(), SyncError> {
        self.ctrl.send(c).map_err(|_| SyncError::Closed)
    }

    fn on_done(&mut self) -> Result<(), SyncError> {
        let received = {
            let mut s = self.ctx.stats();
            s.caught_up = true;
            s.planned = s.items_received;
            s.planned_feeds = 0;
            s.entries_received
        };
        self.progress(received, 0);
        if !self.skipped.is_empty() && self.resync_rounds < MAX_RESYNC_ROUNDS {
            // Entries we skipped (they did not fit what we held then): ask
            // again from our current state.
            self.resync_rounds += 1;
            let feeds = self.skipped.drain().collect();
            self.send_ctrl(Ctrl::Resync(feeds))?;
        }
        Ok(())
    }

    fn progress(&self, received: u64, remaining: u64) {
        self.ctx.node.emit(NodeEvent::SyncProgress {
            peer: self.ctx.remote_peer.clone(),
            received,
            remaining,
        });
    }

    async fn ingest(
        &mut self,
        batch: Vec<IncomingEntry>,
        graph_change: bool,
    ) -> Result<(), SyncError> {
        let n = batch.len() as u64;
        let node = self.ctx.node.clone();
        // SQLite work (with an fsync) off the async threads.
        let out = tokio::task::spawn_blocking(move || node.ingest_from_peer(&batch))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        let out = match out {
            Ok(out) => out,
            Err(Error::BatchRejected { index, reason }) => {
                return Err(SyncError::InvalidEntries(format!(
                    "entry {index}: {reason}"
                )));
            }
            Err(e) => return Err(SyncError::Store(e)),
        };
        let (received, remaining) = {
            let mut s = self.ctx.stats();
            s.items_received += n;
            s.entries_received += out.report.accepted;
            s.duplicates_received += out.report.duplicates;
            (s.entries_received, s.remaining())
        };
        self.soft_faults += out.report.duplicates + out.skipped.len() as u64;
        if self.soft_faults > self.ctx.config.limits.max_soft_faults {
            return Err(SyncError::ProtocolViolation(
                "keeps sending entries this node holds or cannot place".into(),
            ));
        }
        self.skipped.extend(out.skipped);
        self.progress(received, remaining);
        if graph_change {
            self.send_ctrl(Ctrl::ScopeDirty)?;
        }
        Ok(())
    }
}

// ----- writer ---------------------------------------------------------------

/// The writer's queues: `dirty` feeds may have urgent entries (new ones, or
/// the newest of a feed the peer lacks); `backfill` feeds have older
/// history to send afterwards.
#[derive(Default)]
struct Outbox {
    dirty: VecDeque<AuthorId>,
    dirty_set: HashSet<AuthorId>,
    backfill: VecDeque<AuthorId>,
    backfill_set: HashSet<AuthorId>,
    /// Entries of a head still to send as urgent, per feed.
    head_quota: HashMap<AuthorId, u64>,
    evidence_sent: HashSet<EntryId>,
    /// A Done is owed once the queues drain.
    done_pending: bool,
}

impl Outbox {
    fn mark_dirty(&mut self, a: AuthorId) {
        if self.dirty_set.insert(a) {
            self.dirty.push_back(a);
        }
    }

    fn mark_backfill(&mut self, a: AuthorId) {
        if self.backfill_set.insert(a) {
            self.backfill.push_back(a);
        }
    }

    fn pop(&mut self, urgent: bool) {
        let (q, set) = if urgent {
            (&mut self.dirty, &mut self.dirty_set)
        } else {
            (&mut self.backfill, &mut self.backfill_set)
        };
        if let Some(a) = q.pop_front() {
            set.remove(&a);
        }
    }
}

enum Flow {
    Continue,
    End,
}

enum Wake {
    Ctrl(Option<Ctrl>),
    Event(Result<NodeEvent, broadcast::error::RecvError>),
    Mailbox(Result<MailboxEvent, broadcast::error::RecvError>),
    Stop,
    Scope,
    Tick,
}

struct Writer<W> {
    ctx: Arc<Ctx>,
    wr: W,
    key: [u8; 32],
    send_max: usize,
    shared: Arc<Mutex<Shared>>,
    outbox: Outbox,
    scope_dirty: bool,
    /// The node's graph epoch when the scope was last marked for a refresh.
    graph_epoch: u64,
    last_scope: Instant,
    carrier: Arc<Mutex<CarrierState>>,
    /// New envelopes and acks of this node (taken by the run loop).
    mailbox: Option<broadcast::Receiver<MailboxEvent>>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn run(
        mut self,
        ctrl: mpsc::UnboundedReceiver<Ctrl>,
        events: broadcast::Receiver<NodeEvent>,
    ) -> Result<(), SyncError> {
        let result = self.run_loop(ctrl, events).await;
        // Let the peer see the end of the stream.
        let _ = self.wr.close().await;
        result
    }

    async fn run_loop(
        &mut self,
        mut ctrl: mpsc::UnboundedReceiver<Ctrl>,
        mut events: broadcast::Receiver<NodeEvent>,
    ) -> Result<(), SyncError> {
        let mut stop = self.ctx.stop.clone();
        let mut epoch = self.ctx.scope_epoch.clone();
        let mut epoch_alive = true;
        let mut mailbox = self.mailbox.take();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            // Everything already waiting, without blocking.
            loop {
                match ctrl.try_recv() {
                    Ok(c) => {
                        if let Flow::End = self.on_ctrl(c).await? {
                            return Ok(());
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            loop {
                match events.try_recv() {
                    Ok(ev) => self.on_event(ev),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => self.on_lag(),
                    Err(_) => break,
                }
            }
            while let Some(rx) = mailbox.as_mut() {
                match rx.try_recv() {
                    Ok(ev) => self.on_mailbox(Ok(ev))?,
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        self.on_mailbox(Err(broadcast::error::RecvError::Lagged(n)))?;
                    }
                    Err(_) => break,
                }
            }
            // Envelopes and acks first: they are small and latency matters.
            let msg = {
                let node = self.ctx.node.clone();
                lock(&self.carrier).next_message(&node, self.send_max)?
            };
            if let Some(msg) = msg {
                self.send(&msg).await?;
                tokio::task::yield_now().await;
                continue;
            }
            if epoch_alive && epoch.has_changed().unwrap_or(false) {
                epoch.borrow_and_update();
                self.scope_dirty = true;
            }
            if self.scope_dirty && self.last_scope.elapsed() >= SCOPE_DEBOUNCE {
                self.refresh_scope().await?;
            }
            let batch = self.next_batch()?;
            if !batch.is_empty() {
                let n = batch.len() as u64;
                self.send(&Message::Entries(batch)).await?;
                self.ctx.stats().entries_sent += n;
                // Let the reader and other sessions run between batches.
                tokio::task::yield_now().await;
                continue;
            }
            if self.outbox.done_pending {
                self.outbox.done_pending = false;
                self.send(&Message::Done).await?;
            }
            let tick = self.scope_dirty;
            let wake = tokio::select! {
                c = ctrl.recv() => Wake::Ctrl(c),
                ev = events.recv() => Wake::Event(ev),
                ev = async {
                    match mailbox.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => Wake::Mailbox(ev),
                r = stop.changed() => if r.is_ok() { Wake::Tick } else { Wake::Stop },
                r = epoch.changed(), if epoch_alive => {
                    epoch_alive = r.is_ok();
                    Wake::Scope
                },
                () = tokio::time::sleep(SCOPE_DEBOUNCE), if tick => Wake::Tick,
            };
            match wake {
                Wake::Ctrl(Some(c)) => {
                    if let Flow::End = self.on_ctrl(c).await? {
                        return Ok(());
                    }
                }
                Wake::Ctrl(None) | Wake::Stop => return Ok(()),
                Wake::Event(Ok(ev)) => self.on_event(ev),
                Wake::Mailbox(Err(broadcast::error::RecvError::Closed)) => mailbox = None,
                Wake::Mailbox(ev) => self.on_mailbox(ev)?,
                Wake::Event(Err(broadcast::error::RecvError::Lagged(_))) => self.on_lag(),
                // The node (which owns the sender) is gone.
                Wake::Event(Err(broadcast::error::RecvError::Closed)) => return Ok(()),
                Wake::Scope => self.scope_dirty = true,
                Wake::Tick => {}
            }
        }
    }

    async fn send(&mut self, msg: &Message) -> Result<(), SyncError> {
        send_msg(&self.ctx, &mut self.wr, msg).await
    }

    /// Our acks and inventory, right after the handshake (mailbox peers).
    async fn carrier_opening(&mut self) -> Result<(), SyncError> {
        let msgs = {
            let node = self.ctx.node.clone();
            lock(&self.carrier).opening(&node, self.send_max)?
        };
        for m in msgs {
            self.send(&m).await?;
        }
        Ok(())
    }

    fn on_mailbox(
        &mut self,
        ev: Result<MailboxEvent, broadcast::error::RecvError>,
    ) -> Result<(), SyncError> {
        let node = self.ctx.node.clone();
        let mut c = lock(&self.carrier);
        match ev {
            Ok(ev) => c.on_event(ev, self.ctx.session_id),
            Err(_) => c.on_lag(&node)?,
        }
        Ok(())
    }

    /// Announces `clock` in as many Clock frames as needed.
    async fn send_clock(&mut self, clock: &[(AuthorId, FeedState)]) -> Result<(), SyncError> {
        let per_frame = ((self.send_max - FRAME_SLACK) / MAX_CLOCK_ITEM).max(1);
        for chunk in clock.chunks(per_frame) {
            let items = chunk
                .iter()
                .map(|(a, s)| ClockItem {
                    short: short_id(&self.key, a),
                    latest: s.latest,
                    low: if s.latest == 0 { 0 } else { s.low },
                    forked: s.forked && s.latest > 0,
                })
                .collect();
            self.send(&Message::Clock(items)).await?;
        }
        Ok(())
    }

    async fn on_ctrl(&mut self, c: Ctrl) -> Result<Flow, SyncError> {
        match c {
            Ctrl::Clock(items) => self.on_clock(items).await?,
            Ctrl::Resync(feeds) => {
                let clock = scope::clock(&self.ctx.node, &feeds)?;
                self.ctx.stats().caught_up = false;
                self.send_clock(&clock).await?;
            }
            Ctrl::ScopeDirty => self.scope_dirty = true,
            Ctrl::InventoryDone => {
                let now = crate::store::now_ms();
                let held = self
                    .ctx
                    .node
                    .store()
                    .read(|c| crate::mailbox::inventory(c, now))?;
                lock(&self.carrier).finish_inventory(held);
            }
            Ctrl::Eof => return Ok(Flow::End),
            Ctrl::Fail(e) => return Err(e),
        }
        Ok(Flow::Continue)
    }

    /// The peer announced what it holds of feeds it wants: plan, then queue.
    async fn on_clock(&mut self, items: Vec<ClockItem>) -> Result<(), SyncError> {
        // Short ids of every feed held (collisions map to None: not served).
        let held = self.ctx.node.store().read(replication::all_feed_states)?;
        let mut index: HashMap<[u8; 8], Option<(AuthorId, FeedState)>> =
            HashMap::with_capacity(held.len());
        for (a, s) in held {
            index
                .entry(short_id(&self.key, &a))
                .and_modify(|v| *v = None)
                .or_insert(Some((a, s)));
        }
        let nf = self.ctx.config.newest_first;
        let (mut entries, mut feeds) = (0u64, 0u64);
        let mut touched = Vec::new();
        {
            let mut sh = lock(&self.shared);
            for it in items {
                let theirs = FeedState {
                    latest: it.latest,
                    low: it.low,
                    forked: it.forked,
                };
                match index.get(&it.short) {
                    Some(Some((a, local))) => {
                        sh.remote.insert(*a, theirs);
                        let (p1, p2) = plan_feed(*local, theirs, nf);
                        let n = p1.map_or(0, |r| r.len) + p2.map_or(0, |r| r.len);
                        if n > 0 {
                            entries += n;
                            feeds += 1;
                        }
                        touched.push(*a);
                    }
                    Some(None) => {}
                    None => {
                        sh.remote_unknown.insert(it.short, theirs);
                    }
                }
            }
        }
        for a in touched {
            self.outbox.mark_dirty(a);
        }
        self.send(&Message::Plan { entries, feeds }).await?;
        self.outbox.done_pending = true;
        Ok(())
    }

    fn on_event(&mut self, ev: NodeEvent) {
        let NodeEvent::EntryAdded { author, .. } = ev else {
            return;
        };
        {
            let mut sh = lock(&self.shared);
            if sh.remote.contains_key(&author) {
                self.outbox.mark_dirty(author);
            } else if !sh.remote_unknown.is_empty()
                && let Some(st) = sh.remote_unknown.remove(&short_id(&self.key, &author))
            {
                sh.remote.insert(author, st);
                self.outbox.mark_dirty(author);
            }
        }
        // A follow or block anywhere in the graph may change the scope; the
        // node counts such commits, so no entry needs to be looked up here.
        let epoch = self.ctx.node.graph_epoch();
        if epoch != self.graph_epoch {
            self.graph_epoch = epoch;
            self.scope_dirty = true;
        }
    }

    /// Events were lost: re-check every feed the peer wants, and the scope.
    fn on_lag(&mut self) {
        let feeds: Vec<AuthorId> = lock(&self.shared).remote.keys().copied().collect();
        for a in feeds {
            self.outbox.mark_dirty(a);
        }
        self.scope_dirty = true;
    }

    /// Recomputes the scope; feeds new to it are announced to the peer.
    async fn refresh_scope(&mut self) -> Result<(), SyncError> {
        self.scope_dirty = false;
        self.last_scope = Instant::now();
        let scope = scope::compute(&self.ctx.node, self.ctx.config.hops)?;
        let (new, wants): (Vec<AuthorId>, usize) = {
            let mut sh = lock(&self.shared);
            let new = scope
                .into_iter()
                .filter(|a| sh.my_wants.insert(*a))
                .collect();
            (new, sh.my_wants.len())
        };
        if !new.is_empty() {
            self.ctx.stats().wants = wants as u64;
            self.ctx.stats().caught_up = false;
            let clock = scope::clock(&self.ctx.node, &new)?;
            self.send_clock(&clock).await?;
        }
        Ok(())
    }

    /// The next Entries batch: urgent work first (new entries, the newest of
    /// feeds the peer lacks), then backfill and fork evidence.
    fn next_batch(&mut self) -> Result<Vec<IncomingEntry>, SyncError> {
        let max_items = self.ctx.config.batch_size.max(1);
        let budget = self.send_max - FRAME_SLACK;
        let nf = self.ctx.config.newest_first;
        let mut items: Vec<IncomingEntry> = Vec::new();
        let mut bytes = 0usize;
        while items.len() < max_items {
            let (author, urgent) = match (self.outbox.dirty.front(), self.outbox.backfill.front()) {
                (Some(a), _) => (*a, true),
                (None, Some(a)) => (*a, false),
                (None, None) => break,
            };
            let Some(remote) = lock(&self.shared).remote.get(&author).copied() else {
                self.outbox.pop(urgent);
                continue;
            };
            let local = self
                .ctx
                .node
                .store()
                .read(|c| replication::feed_state(c, &author))?;
            let (p1, p2) = plan_feed(local, remote, nf);
            if remote.latest == 0 && p1.is_some() {
                self.outbox.head_quota.insert(author, nf);
            }
            let quota = self.outbox.head_quota.get(&author).copied().unwrap_or(0);
            let run = match (p1, p2) {
                (Some(r), _) => Some(r),
                (None, Some(r)) if quota > 0 => Some(r.take(quota)),
                (None, Some(r)) if !urgent => Some(r),
                _ => None,
            };
            let Some(run) = run else {
                self.outbox.head_quota.remove(&author);
                if urgent {
                    self.outbox.pop(true);
                    if p2.is_some() || (local.forked && !remote.forked) {
                        self.outbox.mark_backfill(author);
                    }
                } else {
                    let room = budget.saturating_sub(bytes);
                    items.extend(self.fork_evidence(author, local, remote, room)?);
                    self.outbox.pop(false);
                }
                continue;
            };
            let run = run.take((max_items - items.len()) as u64);
            let (lo, hi) = run.bounds();
            let mut fetched = self
                .ctx
                .node
                .store()
                .read(|c| replication::entries_range(c, &author, lo, hi))?;
            if run.descending {
                fetched.reverse();
            }
            let mut expected = run.start;
            let mut sent = 0u64;
            let mut full = false;
            for (seq, item) in fetched {
                if seq != expected {
                    break;
                }
                let size = entry_item_len(&item);
                if bytes + size > budget && !items.is_empty() {
                    full = true;
                    break;
                }
                bytes += size;
                items.push(item);
                sent += 1;
                if let Some(st) = lock(&self.shared).remote.get_mut(&author) {
                    note_held(st, seq);
                }
                expected = if run.descending {
                    seq.saturating_sub(1)
                } else {
                    seq + 1
                };
            }
            if let Some(q) = self.outbox.head_quota.get_mut(&author) {
                *q = q.saturating_sub(sent);
            }
            if full {
                break;
            }
            if sent == 0 {
                // The store changed under us (e.g. a block purged the feed).
                self.outbox.pop(urgent);
            }
        }
        Ok(items)
    }

    /// Fork evidence the peer lacks, for positions it holds: both entries
    /// of each conflicting pair, without payloads.
    fn fork_evidence(
        &mut self,
        author: AuthorId,
        local: FeedState,
        remote: FeedState,
        room: usize,
    ) -> Result<Vec<IncomingEntry>, SyncError> {
        if !local.forked || remote.forked || remote.latest == 0 {
            return Ok(Vec::new());
        }
        let rows = self
            .ctx
            .node
            .store()
            .read(|c| replication::fork_evidence(c, &author))?;
        let mut out = Vec::new();
        let mut all = true;
        let mut used = 0usize;
        for (seq, stored, conflicting) in rows {
            if seq < remote.low || seq > remote.latest || out.len() >= 2 * MAX_EVIDENCE_PER_BATCH {
                all = false;
                continue;
            }
            let id = EntryId::from_bytes(*blake3::hash(&conflicting).as_bytes());
            if self.outbox.evidence_sent.contains(&id) {
                continue;
            }
            let size = stored.len() + conflicting.len() + 8;
            if used + size > room {
                all = false;
                continue;
            }
            used += size;
            self.outbox.evidence_sent.insert(id);
            for entry_bytes in [stored, conflicting] {
                out.push(IncomingEntry {
                    entry_bytes,
                    payload: None,
                });
            }
        }
        if all && let Some(st) = lock(&self.shared).remote.get_mut(&author) {
            st.forked = true;
        }
        Ok(out)
    }
}
