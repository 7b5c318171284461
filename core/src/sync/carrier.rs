//! The envelope-carrier half of a sync session (docs/PROTOCOL.md §5.1):
//! what one session knows about the peer's mailbox, and the Inventory,
//! Envelopes and Acks messages it sends.
//!
//! Guarantees: within a session no envelope or ack is sent twice or back to
//! the peer it came from; an inventory is bounded ([`MAX_INVENTORY`] short
//! ids per session); every envelope a peer sends is decoded strictly before
//! anything of its message is stored.

use std::collections::{HashSet, VecDeque};

use crate::mailbox::{self, EnvelopeHash, MailboxEvent};
use crate::messaging::envelope::ACK_SECRET_LEN;
use crate::node::Node;
use crate::store::now_ms;
use crate::sync::error::SyncError;
use crate::sync::messages::{Message, varint_len};

/// Most inventory short ids a peer may announce in one session (twice the
/// mailbox cap, so a full mailbox and churn fit).
pub(crate) const MAX_INVENTORY: u64 = 2 * mailbox::MAX_ENVELOPES;
/// Most acks sent at session start (the newest).
const START_ACKS: u32 = 10_000;
/// Room kept in a frame for the type, flag and count.
const SLACK: usize = 16;

/// An envelope's short id within one session: `BLAKE3-keyed(K, hash)[0..8]`
/// with the session's short-id key K (docs/PROTOCOL.md §6.2).
pub(crate) fn short_env_id(key: &[u8; 32], hash: &EnvelopeHash) -> [u8; 8] {
    let h = blake3::keyed_hash(key, hash);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    out
}

/// Per-session carrier state, shared by the session's reader and writer.
pub(crate) struct CarrierState {
    /// Both sides announced the capability.
    pub enabled: bool,
    key: [u8; 32],
    /// Envelopes the peer holds: sent to it or received from it.
    peer_has: HashSet<EnvelopeHash>,
    /// The peer's inventory so far.
    their_shorts: HashSet<[u8; 8]>,
    inventory_items: u64,
    /// The peer's whole inventory arrived and the difference was queued.
    pub inventory_done: bool,
    /// Acks the peer knows (sent either way).
    acks_known: HashSet<[u8; ACK_SECRET_LEN]>,
    env_queue: VecDeque<EnvelopeHash>,
    queued: HashSet<EnvelopeHash>,
    ack_queue: VecDeque<[u8; ACK_SECRET_LEN]>,
}

impl CarrierState {
    pub(crate) fn new(enabled: bool, key: [u8; 32]) -> CarrierState {
        CarrierState {
            enabled,
            key,
            peer_has: HashSet::new(),
            their_shorts: HashSet::new(),
            inventory_items: 0,
            inventory_done: false,
            acks_known: HashSet::new(),
            env_queue: VecDeque::new(),
            queued: HashSet::new(),
            ack_queue: VecDeque::new(),
        }
    }

    fn require(&self) -> Result<(), SyncError> {
        if self.enabled {
            Ok(())
        } else {
            Err(SyncError::ProtocolViolation(
                "mailbox message without the mailbox capability".into(),
            ))
        }
    }

    /// Reader: an Inventory message. Returns whether it was the last one.
    pub(crate) fn on_inventory(
        &mut self,
        shorts: Vec<[u8; 8]>,
        last: bool,
    ) -> Result<bool, SyncError> {
        self.require()?;
        if self.inventory_done {
            return Err(SyncError::ProtocolViolation(
                "inventory after the last inventory".into(),
            ));
        }
        self.inventory_items += shorts.len() as u64;
        if self.inventory_items > MAX_INVENTORY {
            return Err(SyncError::Flood("inventory too large".into()));
        }
        self.their_shorts.extend(shorts);
        Ok(last)
    }

    /// Reader: the peer sent these envelopes / acks (it holds / knows them).
    pub(crate) fn note_received(
        &mut self,
        hashes: &[EnvelopeHash],
        acks: &[[u8; 32]],
    ) -> Result<(), SyncError> {
        self.require()?;
        self.peer_has.extend(hashes.iter().copied());
        self.acks_known.extend(acks.iter().copied());
        Ok(())
    }

    /// Writer: the peer's inventory is complete; queue what it lacks.
    pub(crate) fn finish_inventory(&mut self, held: Vec<EnvelopeHash>) {
        self.inventory_done = true;
        for h in held {
            if !self.their_shorts.contains(&short_env_id(&self.key, &h)) {
                self.queue(h);
            }
        }
        self.their_shorts = HashSet::new();
    }

    fn queue(&mut self, h: EnvelopeHash) {
        if !self.peer_has.contains(&h) && self.queued.insert(h) {
            self.env_queue.push_back(h);
        }
    }

    /// Writer: something new in this node's mailbox.
    pub(crate) fn on_event(&mut self, ev: MailboxEvent, session: u64) {
        if !self.enabled {
            return;
        }
        match ev {
            MailboxEvent::Envelope { hash, origin } => {
                if origin != session && self.inventory_done {
                    self.queue(hash);
                }
            }
            MailboxEvent::Ack { secret, origin } => {
                if origin != session && self.acks_known.insert(secret) {
                    self.ack_queue.push_back(secret);
                }
            }
        }
    }

    /// Writer: events were lost; re-queue everything the peer may lack.
    pub(crate) fn on_lag(&mut self, node: &Node) -> Result<(), SyncError> {
        if !self.enabled || !self.inventory_done {
            return Ok(());
        }
        let now = now_ms();
        for h in node.store().read(|c| mailbox::inventory(c, now))? {
            self.queue(h);
        }
        for s in node.store().read(|c| mailbox::acks(c, now, START_ACKS))? {
            if self.acks_known.insert(s) {
                self.ack_queue.push_back(s);
            }
        }
        Ok(())
    }

    /// Writer, at session start: our acks and our inventory.
    pub(crate) fn opening(
        &mut self,
        node: &Node,
        send_max: usize,
    ) -> Result<Vec<Message>, SyncError> {
        let mut out = Vec::new();
        if !self.enabled {
            return Ok(out);
        }
        let now = now_ms();
        let acks = node.store().read(|c| mailbox::acks(c, now, START_ACKS))?;
        self.acks_known.extend(acks.iter().copied());
        let per = ((send_max - SLACK) / 32).max(1);
        for chunk in acks.chunks(per) {
            out.push(Message::Acks(chunk.to_vec()));
        }
        let held = node.store().read(|c| mailbox::inventory(c, now))?;
        let per = ((send_max - SLACK) / 8).max(1);
        let shorts: Vec<[u8; 8]> = held.iter().map(|h| short_env_id(&self.key, h)).collect();
        let mut chunks = shorts.chunks(per).peekable();
        if chunks.peek().is_none() {
            out.push(Message::Inventory {
                shorts: Vec::new(),
                last: true,
            });
        }
        while let Some(c) = chunks.next() {
            out.push(Message::Inventory {
                shorts: c.to_vec(),
                last: chunks.peek().is_none(),
            });
        }
        Ok(out)
    }

    /// Writer: the next Acks or Envelopes message, if any is owed.
    pub(crate) fn next_message(
        &mut self,
        node: &Node,
        send_max: usize,
    ) -> Result<Option<Message>, SyncError> {
        if !self.enabled {
            return Ok(None);
        }
        if !self.ack_queue.is_empty() {
            let per = ((send_max - SLACK) / 32).max(1);
            let n = per.min(self.ack_queue.len());
            let acks: Vec<[u8; 32]> = self.ack_queue.drain(..n).collect();
            return Ok(Some(Message::Acks(acks)));
        }
        let budget = send_max - SLACK;
        let now = now_ms();
        let mut items: Vec<Vec<u8>> = Vec::new();
        let mut used = 0usize;
        while let Some(h) = self.env_queue.front().copied() {
            if self.peer_has.contains(&h) {
                self.env_queue.pop_front();
                continue;
            }
            let Some(bytes) = node.store().read(|c| mailbox::get(c, &h, now))? else {
                // Acked, expired or evicted meanwhile.
                self.env_queue.pop_front();
                continue;
            };
            let size = varint_len(bytes.len() as u64) + bytes.len();
            if used + size > budget && !items.is_empty() {
                break;
            }
            self.env_queue.pop_front();
            self.peer_has.insert(h);
            used += size;
            items.push(bytes);
        }
        Ok((!items.is_empty()).then_some(Message::Envelopes(items)))
    }
}
