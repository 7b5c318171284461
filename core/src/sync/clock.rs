//! Compact clocks: per-session short feed ids, the scope digest that makes a
//! no-op sync cost a few hundred bytes, bucket digests that narrow a nearly
//! equal pair of scopes down to the few feeds that differ, and the per-feed transfer plan
//! (what one side sends the other, newest first for feeds it lacks).
//!
//! Guarantees: [`plan_feed`] only proposes entries the receiver can verify
//! on arrival (extending its suffix forward, a head for a feed it lacks, or
//! backfilling just below its suffix), and never one it already holds.

use crate::identity::id::AuthorId;
use crate::store::replication::FeedState;

const SHORT_ID_CONTEXT: &str = "starling/sync/1 short feed id";
const SUMMARY_CONTEXT: &str = "starling/sync/1 summary";
const BUCKET_CONTEXT: &str = "starling/sync/1 bucket digest";

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

/// Scopes of at most this many feeds (the larger of the two counts) skip
/// the bucket round and exchange full clocks: they are small anyway.
pub(crate) const BUCKETS_ABOVE: u64 = 64;
/// Fewest and most bucket bits (16 to 256 buckets).
pub(crate) const MIN_BUCKET_BITS: u8 = 4;
pub(crate) const MAX_BUCKET_BITS: u8 = 8;
/// Bytes of a bucket digest.
pub(crate) const BUCKET_DIGEST_LEN: usize = 8;

/// How many bucket bits a session whose Summaries counted `mine` and
/// `theirs` feeds uses (both sides compute the same), or `None` for a full
/// clock exchange: the smallest `k` with `2^k * 4 >= max(mine, theirs)`,
/// clamped to `4..=8`, so a bucket holds about four feeds.
pub(crate) fn bucket_bits(mine: u64, theirs: u64) -> Option<u8> {
    let n = mine.max(theirs);
    if n <= BUCKETS_ABOVE {
        return None;
    }
    let want = n.div_ceil(4);
    let mut k = MIN_BUCKET_BITS;
    while k < MAX_BUCKET_BITS && (1u64 << k) < want {
        k += 1;
    }
    Some(k)
}

/// The bucket of a feed: the top `bits` bits of its short id's first byte.
pub(crate) fn bucket_of(key: &[u8; 32], author: &AuthorId, bits: u8) -> usize {
    usize::from(short_id(key, author)[0] >> (8 - bits))
}

/// The `2^bits` bucket digests of a clock: for each bucket, the first 8
/// bytes of `BLAKE3-keyed(Kb, for each feed of the bucket sorted by author:
/// author || u64 latest || u64 low || u8 forked)` with
/// `Kb = BLAKE3-derive_key(BUCKET_CONTEXT, K)`. Equal digests mean both
/// sides want the same feeds of that bucket and hold the same ranges.
pub(crate) fn bucket_digests(
    key: &[u8; 32],
    clock: &[(AuthorId, FeedState)],
    bits: u8,
) -> Vec<[u8; BUCKET_DIGEST_LEN]> {
    let kb = blake3::derive_key(BUCKET_CONTEXT, key);
    let mut sorted: Vec<(usize, &(AuthorId, FeedState))> = clock
        .iter()
        .map(|f| (bucket_of(key, &f.0, bits), f))
        .collect();
    sorted.sort_by_key(|(b, (a, _))| (*b, *a));
    let mut out = Vec::with_capacity(1 << bits);
    let mut it = sorted.into_iter().peekable();
    for b in 0..(1usize << bits) {
        let mut h = blake3::Hasher::new_keyed(&kb);
        while let Some((_, (author, s))) = it.next_if(|(fb, _)| *fb == b) {
            h.update(author.as_bytes());
            h.update(&s.latest.to_be_bytes());
            h.update(&s.low.to_be_bytes());
            h.update(&[u8::from(s.forked)]);
        }
        let mut d = [0u8; BUCKET_DIGEST_LEN];
        d.copy_from_slice(&h.finalize().as_bytes()[..BUCKET_DIGEST_LEN]);
        out.push(d);
    }
    out
}

/// Splits `clock` by the buckets whose digests differ between `mine` and
/// `theirs`: (feeds of equal buckets — the peer holds exactly what we hold
/// — , feeds of differing buckets, to announce in Clock messages).
#[allow(clippy::type_complexity)]
pub(crate) fn split_by_buckets(
    key: &[u8; 32],
    clock: &[(AuthorId, FeedState)],
    bits: u8,
    mine: &[[u8; BUCKET_DIGEST_LEN]],
    theirs: &[[u8; BUCKET_DIGEST_LEN]],
) -> (Vec<(AuthorId, FeedState)>, Vec<(AuthorId, FeedState)>) {
    clock.iter().partition(|(a, _)| {
        let b = bucket_of(key, a, bits);
        mine.get(b) == theirs.get(b)
    })
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
    fn bucket_digests_isolate_the_differing_feeds() {
        assert_eq!(bucket_bits(64, 10), None);
        assert_eq!(bucket_bits(65, 0), Some(5));
        assert_eq!(bucket_bits(1001, 1001), Some(8));
        assert_eq!(bucket_bits(100_000, 3), Some(8));
        assert_eq!(bucket_bits(200, 100), Some(6));
        let key = short_key(&[1; 16], &[2; 16]);
        let shared: Vec<(AuthorId, FeedState)> = (0..1000u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.to_be_bytes());
                (AuthorId::from_bytes(b), st(u64::from(i % 7) + 1, 1))
            })
            .collect();
        // Each side also has its own feed; order does not matter.
        let (own_a, own_b) = (
            AuthorId::from_bytes([0xaa; 32]),
            AuthorId::from_bytes([0xbb; 32]),
        );
        let mut a = shared.clone();
        a.push((own_a, st(5, 1)));
        let mut b = shared.clone();
        b.reverse();
        b.push((own_b, st(9, 1)));
        let bits = bucket_bits(a.len() as u64, b.len() as u64).unwrap();
        let (da, db) = (
            bucket_digests(&key, &a, bits),
            bucket_digests(&key, &b, bits),
        );
        assert_eq!(da.len(), 256);
        let differing = da.iter().zip(&db).filter(|(x, y)| x != y).count();
        assert!((1..=2).contains(&differing), "{differing}");
        let (same, announce) = split_by_buckets(&key, &a, bits, &da, &db);
        assert_eq!(same.len() + announce.len(), a.len());
        assert!(announce.iter().any(|(x, _)| *x == own_a));
        assert!(announce.len() < 30, "{}", announce.len());
        // A changed range changes its bucket's digest.
        let mut c = a.clone();
        c[3].1.latest += 1;
        let dc = bucket_digests(&key, &c, bits);
        assert_eq!(da.iter().zip(&dc).filter(|(x, y)| x != y).count(), 1);
        let changed = bucket_of(&key, &c[3].0, bits);
        assert_ne!(dc[changed], da[changed]);
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
