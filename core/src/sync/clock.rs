//! Compact clocks: per-session short feed ids, the scope digest that makes a
//! no-op sync cost a few hundred bytes, and the per-feed transfer plan
//! (what one side sends the other, newest first for feeds it lacks).
//!
//! Guarantees: [`plan_feed`] only proposes entries the receiver can verify
//! on arrival (extending its suffix forward, a head for a feed it lacks, or
//! backfilling just below its suffix), and never one it already holds.

use crate::identity::id::AuthorId;
use crate::store::replication::FeedState;

const SHORT_ID_CONTEXT: &str = "starling/sync/1 short feed id";
const SUMMARY_CONTEXT: &str = "starling/sync/1 summary";

/// The key of this session's short ids, from both Hello nonces (initiator
/// first), so neither peer alone can choose colliding ids in advance.
pub(crate) fn short_key(initiator_nonce: &[u8; 16], responder_nonce: &[u8; 16]) -> [u8; 32] {
    let mut material = [0u8; 32];
    material[..16].copy_from_slice(initiator_nonce);
    material[16..].copy_from_slice(responder_nonce);
    blake3::derive_key(SHORT_ID_CONTEXT, &material)
}

/// A feed's 8-byte id within one session.
pub(crate) fn short_id(key: &[u8; 32], author: &AuthorId) -> [u8; 8] {
    let h = blake3::keyed_hash(key, author.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    out
}

/// Digest of a scope clock: equal digests mean both sides want the same
/// feeds and hold exactly the same range of each.
pub(crate) fn digest(clock: &[(AuthorId, FeedState)]) -> [u8; 32] {
    let mut sorted: Vec<&(AuthorId, FeedState)> = clock.iter().collect();
    sorted.sort_by_key(|(a, _)| *a);
    let mut h = blake3::Hasher::new_derive_key(SUMMARY_CONTEXT);
    for (author, s) in sorted {
        h.update(author.as_bytes());
        h.update(&s.latest.to_be_bytes());
        h.update(&s.low.to_be_bytes());
        h.update(&[u8::from(s.forked)]);
    }
    *h.finalize().as_bytes()
}

/// A run of consecutive seqs, sent in ascending or descending order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeqRun {
    /// First seq sent.
    pub start: u64,
    /// Number of entries.
    pub len: u64,
    /// Descending (newest first / backfill) or ascending (forward).
    pub descending: bool,
}

impl SeqRun {
    fn up(from: u64, to: u64) -> Option<SeqRun> {
        (to >= from && from >= 1).then_some(SeqRun {
            start: from,
            len: to - from + 1,
            descending: false,
        })
    }

    fn down(from: u64, to: u64) -> Option<SeqRun> {
        (from >= to && to >= 1).then_some(SeqRun {
            start: from,
            len: from - to + 1,
            descending: true,
        })
    }

    /// The first `n` entries of the run.
    pub(crate) fn take(self, n: u64) -> SeqRun {
        SeqRun {
            len: self.len.min(n),
            ..self
        }
    }

    /// Lowest and highest seq of the run.
    pub(crate) fn bounds(self) -> (u64, u64) {
        let far = if self.descending {
            self.start + 1 - self.len
        } else {
            self.start + self.len - 1
        };
        (self.start.min(far), self.start.max(far))
    }
}

/// What `local` should send a peer holding `remote` of the same feed.
/// Phase 1 (urgent): entries newer than the peer's, or the newest
/// `newest_first` entries when the peer holds nothing. Phase 2: older
/// history below the peer's suffix, newest first.
pub(crate) fn plan_feed(
    local: FeedState,
    remote: FeedState,
    newest_first: u64,
) -> (Option<SeqRun>, Option<SeqRun>) {
    if local.latest == 0 {
        return (None, None);
    }
    if remote.latest == 0 {
        let bottom = local
            .latest
            .saturating_sub(newest_first.max(1) - 1)
            .max(local.low);
        let phase1 = SeqRun::down(local.latest, bottom);
        let phase2 = if bottom > local.low {
            SeqRun::down(bottom - 1, local.low)
        } else {
            None
        };
        return (phase1, phase2);
    }
    // Forward: only if our suffix reaches down to the peer's next seq.
    let phase1 = if local.latest > remote.latest && local.low <= remote.latest + 1 {
        SeqRun::up(remote.latest + 1, local.latest)
    } else {
        None
    };
    // Backfill: only if our suffix covers the entry just below the peer's.
    let phase2 = if remote.low > 1 && local.low < remote.low && local.latest + 1 >= remote.low {
        SeqRun::down(remote.low - 1, local.low)
    } else {
        None
    };
    (phase1, phase2)
}

/// Records that the peer now holds `seq` (it was sent or received).
pub(crate) fn note_held(state: &mut FeedState, seq: u64) {
    if state.latest == 0 {
        state.latest = seq;
        state.low = seq;
    } else {
        state.latest = state.latest.max(seq);
        state.low = state.low.min(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(latest: u64, low: u64) -> FeedState {
        FeedState {
            latest,
            low,
            forked: false,
        }
    }

    #[test]
    fn a_fresh_peer_gets_the_newest_first_then_history() {
        let (p1, p2) = plan_feed(st(120, 1), st(0, 0), 50);
        assert_eq!(p1.unwrap().bounds(), (71, 120));
        assert!(p1.unwrap().descending);
        assert_eq!(p2.unwrap().bounds(), (1, 70));
        assert_eq!(p2.unwrap().start, 70);
        // Fewer than 50 entries: all of them at once.
        let (p1, p2) = plan_feed(st(30, 1), st(0, 0), 50);
        assert_eq!(p1.unwrap().bounds(), (1, 30));
        assert!(p2.is_none());
    }

    #[test]
    fn forward_and_backfill_only_when_they_connect() {
        // Peer holds 71..=120, we hold 1..=130: 121..=130 up, then 70..=1 down.
        let (p1, p2) = plan_feed(st(130, 1), st(120, 71), 50);
        assert_eq!(
            (p1.unwrap().bounds(), p1.unwrap().descending),
            ((121, 130), false)
        );
        assert_eq!(
            (p2.unwrap().bounds(), p2.unwrap().descending),
            ((1, 70), true)
        );
        // In sync.
        assert_eq!(plan_feed(st(130, 1), st(130, 1), 50), (None, None));
        // Peer ahead: nothing to send.
        assert_eq!(plan_feed(st(10, 1), st(12, 1), 50), (None, None));
        // Our suffix starts above the peer's latest + 1: cannot connect.
        let (p1, _) = plan_feed(st(100, 60), st(40, 1), 50);
        assert!(p1.is_none());
        // We hold only what is above the peer's low: no backfill.
        let (_, p2) = plan_feed(st(100, 60), st(100, 60), 50);
        assert!(p2.is_none());
    }

    #[test]
    fn short_ids_depend_on_both_nonces() {
        let a = AuthorId::from_bytes([9; 32]);
        let k1 = short_key(&[1; 16], &[2; 16]);
        let k2 = short_key(&[1; 16], &[3; 16]);
        assert_ne!(short_id(&k1, &a), short_id(&k2, &a));
        let c1 = [(a, st(3, 1))];
        let c2 = [(a, st(4, 1))];
        assert_ne!(digest(&c1), digest(&c2));
    }
}
