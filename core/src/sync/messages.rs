//! The messages of `/starling/sync/1` and their canonical byte encoding
//! (specified in docs/PROTOCOL.md §6).
//!
//! Guarantees: decoding is total — any byte string yields a message or a
//! typed [`DecodeError`] — and no count read from the wire can make the
//! decoder allocate more than the frame it came in.

use crate::encoding::{DecodeError, Reader};
use crate::feed::MAX_PAYLOAD_LEN;
use crate::identity::id::AuthorId;
use crate::store::ingest::IncomingEntry;
use crate::sync::clock::{BUCKET_DIGEST_LEN, MAX_BUCKET_BITS, MIN_BUCKET_BITS};

/// Protocol name, as negotiated by the transport.
pub const PROTOCOL_NAME: &str = "/starling/sync/1";
/// Version byte carried in the Hello.
pub const VERSION: u8 = 1;
/// Domain separation for the Hello signature.
pub const HELLO_CONTEXT: &[u8] = b"starling/sync/1 hello";

pub(crate) const T_HELLO: u8 = 0x01;
pub(crate) const T_SUMMARY: u8 = 0x02;
pub(crate) const T_CLOCK: u8 = 0x03;
pub(crate) const T_PLAN: u8 = 0x04;
pub(crate) const T_ENTRIES: u8 = 0x05;
pub(crate) const T_DONE: u8 = 0x06;
pub(crate) const T_INVENTORY: u8 = 0x07;
pub(crate) const T_ENVELOPES: u8 = 0x08;
pub(crate) const T_ACKS: u8 = 0x09;
pub(crate) const T_BUCKETS: u8 = 0x10;

/// Capability bit in the Hello's `max_frame` (its lowest bit): "I carry
/// envelopes" (the mailbox frames 0x07–0x09, docs/PROTOCOL.md §5.1). A peer
/// that does not set it never receives them; its max frame is the announced
/// value with the bit cleared.
pub(crate) const CAP_MAILBOX: u32 = 1;
/// Capability bit in the Hello's `max_frame` (its second-lowest bit): "I
/// send Buckets after a differing Summary" (docs/PROTOCOL.md §6.2). Buckets
/// are only exchanged when both sides set it.
pub(crate) const CAP_BUCKETS: u32 = 2;
/// Every capability bit of the Hello's `max_frame`.
pub(crate) const CAP_MASK: u32 = CAP_MAILBOX | CAP_BUCKETS;
/// Largest envelope in an Envelopes message.
pub(crate) const MAX_ENVELOPE_ITEM: usize = crate::messaging::envelope::MAX_ENVELOPE_LEN;
/// Smallest encoded envelope item: length varint and the smallest envelope.
const MIN_ENVELOPE_ITEM: usize = 2 + crate::messaging::envelope::ENVELOPE_HEADER_LEN + 256;

/// Encoded entry sizes (seq 1 and seq > 1).
const ENTRY_LENS: [usize; 2] = [149, 181];
/// Smallest encoded clock item: 8-byte short id and two 1-byte varints.
const MIN_CLOCK_ITEM: usize = 10;
/// Smallest encoded entries item: length varint, 149 bytes, flag.
const MIN_ENTRY_ITEM: usize = 151;

/// The first message each side sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub version: u8,
    pub author: AuthorId,
    pub nonce: [u8; 16],
    pub max_frame: u32,
    pub signature: [u8; 64],
}

/// "I hold feed `short` from `low` up to `latest`" (both 0: nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClockItem {
    pub short: [u8; 8],
    pub latest: u64,
    pub low: u64,
    pub forked: bool,
}

/// One protocol message (a frame body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Hello(Hello),
    Summary {
        count: u64,
        digest: [u8; 32],
    },
    Clock(Vec<ClockItem>),
    Plan {
        entries: u64,
        feeds: u64,
    },
    Entries(Vec<IncomingEntry>),
    Done,
    /// Short ids of the envelopes the sender carries; `last` ends the
    /// inventory.
    Inventory {
        shorts: Vec<[u8; 8]>,
        last: bool,
    },
    /// Envelopes (each decoded by the receiver, docs/PROTOCOL.md §5).
    Envelopes(Vec<Vec<u8>>),
    /// Ack secrets: carriers drop envelopes whose drop hash is BLAKE3 of one.
    Acks(Vec<[u8; 32]>),
    /// Per-bucket digests of the sender's clock (`2^bits` of them), sent
    /// once after Summaries that differ.
    Buckets {
        bits: u8,
        digests: Vec<[u8; BUCKET_DIGEST_LEN]>,
    },
}

/// The bytes a Hello signature covers: context, the Hello fields, then the
/// signer's and the receiver's transport peer ids (u16-length-prefixed).
pub(crate) fn hello_signed_bytes(hello: &Hello, signer_peer: &str, receiver_peer: &str) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(HELLO_CONTEXT.len() + 61 + signer_peer.len() + receiver_peer.len() + 4);
    out.extend_from_slice(HELLO_CONTEXT);
    out.push(hello.version);
    out.extend_from_slice(hello.author.as_bytes());
    out.extend_from_slice(&hello.nonce);
    out.extend_from_slice(&hello.max_frame.to_be_bytes());
    for peer in [signer_peer, receiver_peer] {
        // Peer ids are short (libp2p: ~52 chars); longer ones are cut, which
        // both sides do identically.
        let bytes = &peer.as_bytes()[..peer.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encoded size of a varint.
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - v.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a canonical LEB128 varint (at most 10 bytes, no redundant
/// trailing zero group, fits in u64).
pub(crate) fn get_varint(r: &mut Reader<'_>, field: &'static str) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let byte = r.u8(field)?;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(invalid(field, "varint overflows u64"));
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(invalid(field, "non-canonical varint"));
            }
            return Ok(v);
        }
    }
    Err(invalid(field, "varint longer than 10 bytes"))
}

fn invalid(field: &'static str, reason: &str) -> DecodeError {
    DecodeError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// Encoded size of one item of an Entries message.
pub(crate) fn entry_item_len(item: &IncomingEntry) -> usize {
    let e = item.entry_bytes.len();
    varint_len(e as u64)
        + e
        + 1
        + item
            .payload
            .as_ref()
            .map_or(0, |p| varint_len(p.len() as u64) + p.len())
}

impl Message {
    /// The canonical encoding (a frame body).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Hello(h) => {
                out.push(T_HELLO);
                out.push(h.version);
                out.extend_from_slice(h.author.as_bytes());
                out.extend_from_slice(&h.nonce);
                out.extend_from_slice(&h.max_frame.to_be_bytes());
                out.extend_from_slice(&h.signature);
            }
            Message::Summary { count, digest } => {
                out.push(T_SUMMARY);
                put_varint(&mut out, *count);
                out.extend_from_slice(digest);
            }
            Message::Clock(items) => {
                out.reserve(1 + 10 + items.len() * 12);
                out.push(T_CLOCK);
                put_varint(&mut out, items.len() as u64);
                for it in items {
                    out.extend_from_slice(&it.short);
                    put_varint(&mut out, it.latest);
                    put_varint(&mut out, (it.low << 1) | u64::from(it.forked));
                }
            }
            Message::Plan { entries, feeds } => {
                out.push(T_PLAN);
                put_varint(&mut out, *entries);
                put_varint(&mut out, *feeds);
            }
            Message::Entries(items) => {
                out.push(T_ENTRIES);
                put_varint(&mut out, items.len() as u64);
                for it in items {
                    put_varint(&mut out, it.entry_bytes.len() as u64);
                    out.extend_from_slice(&it.entry_bytes);
                    match &it.payload {
                        Some(p) => {
                            out.push(1);
                            put_varint(&mut out, p.len() as u64);
                            out.extend_from_slice(p);
                        }
                        None => out.push(0),
                    }
                }
            }
            Message::Done => out.push(T_DONE),
            Message::Inventory { shorts, last } => {
                out.reserve(12 + shorts.len() * 8);
                out.push(T_INVENTORY);
                out.push(u8::from(*last));
                put_varint(&mut out, shorts.len() as u64);
                for s in shorts {
                    out.extend_from_slice(s);
                }
            }
            Message::Envelopes(items) => {
                out.push(T_ENVELOPES);
                put_varint(&mut out, items.len() as u64);
                for it in items {
                    put_varint(&mut out, it.len() as u64);
                    out.extend_from_slice(it);
                }
            }
            Message::Buckets { bits, digests } => {
                out.reserve(2 + digests.len() * BUCKET_DIGEST_LEN);
                out.push(T_BUCKETS);
                out.push(*bits);
                for d in digests {
                    out.extend_from_slice(d);
                }
            }
            Message::Acks(secrets) => {
                out.reserve(11 + secrets.len() * 32);
                out.push(T_ACKS);
                put_varint(&mut out, secrets.len() as u64);
                for s in secrets {
                    out.extend_from_slice(s);
                }
            }
        }
        out
    }

    /// Decodes a frame body. Entries are only framed here; their contents
    /// are validated by the store's ingest.
    pub(crate) fn decode(body: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(body);
        let msg = match r.u8("message type")? {
            T_HELLO => Message::Hello(Hello {
                version: r.u8("hello version")?,
                author: AuthorId::from_bytes(r.array("hello author")?),
                nonce: r.array("hello nonce")?,
                max_frame: r.u32("hello max_frame")?,
                signature: r.array("hello signature")?,
            }),
            T_SUMMARY => Message::Summary {
                count: get_varint(&mut r, "summary count")?,
                digest: r.array("summary digest")?,
            },
            T_CLOCK => {
                let count = get_varint(&mut r, "clock count")?;
                let count = bounded(count, r.remaining() / MIN_CLOCK_ITEM, "clock count")?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    let short = r.array("clock short id")?;
                    let latest = get_varint(&mut r, "clock latest")?;
                    let low_flags = get_varint(&mut r, "clock low")?;
                    let (low, forked) = (low_flags >> 1, low_flags & 1 == 1);
                    let ok = if latest == 0 {
                        low_flags == 0
                    } else {
                        low >= 1 && low <= latest
                    };
                    if !ok {
                        return Err(invalid("clock low", "not within 1..=latest"));
                    }
                    items.push(ClockItem {
                        short,
                        latest,
                        low,
                        forked,
                    });
                }
                Message::Clock(items)
            }
            T_PLAN => Message::Plan {
                entries: get_varint(&mut r, "plan entries")?,
                feeds: get_varint(&mut r, "plan feeds")?,
            },
            T_ENTRIES => {
                let count = get_varint(&mut r, "entries count")?;
                if count == 0 {
                    return Err(invalid(
                        "entries count",
                        "an Entries message is never empty",
                    ));
                }
                let count = bounded(count, r.remaining() / MIN_ENTRY_ITEM, "entries count")?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = get_varint(&mut r, "entry length")?;
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    if !ENTRY_LENS.contains(&len) {
                        return Err(invalid("entry length", "must be 149 or 181"));
                    }
                    let entry_bytes = r.take(len, "entry")?.to_vec();
                    let payload = if r.flag("payload flag")? {
                        let plen = get_varint(&mut r, "payload length")?;
                        let plen = usize::try_from(plen).unwrap_or(usize::MAX);
                        if plen > MAX_PAYLOAD_LEN as usize {
                            return Err(DecodeError::TooLong {
                                field: "payload",
                                len: plen,
                                max: MAX_PAYLOAD_LEN as usize,
                            });
                        }
                        Some(r.take(plen, "payload")?.to_vec())
                    } else {
                        None
                    };
                    items.push(IncomingEntry {
                        entry_bytes,
                        payload,
                    });
                }
                Message::Entries(items)
            }
            T_DONE => Message::Done,
            T_INVENTORY => {
                let last = r.flag("inventory last flag")?;
                let count = get_varint(&mut r, "inventory count")?;
                let count = bounded(count, r.remaining() / 8, "inventory count")?;
                let mut shorts = Vec::with_capacity(count);
                for _ in 0..count {
                    shorts.push(r.array("inventory short id")?);
                }
                Message::Inventory { shorts, last }
            }
            T_ENVELOPES => {
                let count = get_varint(&mut r, "envelopes count")?;
                if count == 0 {
                    return Err(invalid("envelopes count", "never empty"));
                }
                let count = bounded(count, r.remaining() / MIN_ENVELOPE_ITEM, "envelopes count")?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = get_varint(&mut r, "envelope length")?;
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    if len > MAX_ENVELOPE_ITEM {
                        return Err(DecodeError::TooLong {
                            field: "envelope",
                            len,
                            max: MAX_ENVELOPE_ITEM,
                        });
                    }
                    items.push(r.take(len, "envelope")?.to_vec());
                }
                Message::Envelopes(items)
            }
            T_ACKS => {
                let count = get_varint(&mut r, "acks count")?;
                if count == 0 {
                    return Err(invalid("acks count", "never empty"));
                }
                let count = bounded(count, r.remaining() / 32, "acks count")?;
                let mut secrets = Vec::with_capacity(count);
                for _ in 0..count {
                    secrets.push(r.array("ack secret")?);
                }
                Message::Acks(secrets)
            }
            T_BUCKETS => {
                let bits = r.u8("buckets bits")?;
                if !(MIN_BUCKET_BITS..=MAX_BUCKET_BITS).contains(&bits) {
                    return Err(invalid("buckets bits", "not within 4..=8"));
                }
                let mut digests = Vec::with_capacity(1 << bits);
                for _ in 0..(1usize << bits) {
                    digests.push(r.array("bucket digest")?);
                }
                Message::Buckets { bits, digests }
            }
            other => {
                return Err(DecodeError::InvalidField {
                    field: "message type",
                    reason: format!("unknown type {other:#04x}"),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// A count that cannot exceed what the remaining bytes could hold.
fn bounded(count: u64, max: usize, field: &'static str) -> Result<usize, DecodeError> {
    match usize::try_from(count) {
        Ok(c) if c <= max => Ok(c),
        _ => Err(invalid(field, "more items than the frame can hold")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_canonical() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut r = Reader::new(&b);
            assert_eq!(get_varint(&mut r, "v").unwrap(), v);
        }
        for bad in [&[0x80u8, 0x00][..], &[0xff; 11][..], &[0x80][..]] {
            assert!(get_varint(&mut Reader::new(bad), "v").is_err(), "{bad:?}");
        }
        let mut over = vec![0xffu8; 9];
        over.push(0x02);
        assert!(get_varint(&mut Reader::new(&over), "v").is_err());
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let msgs = [
            Message::Summary {
                count: 1000,
                digest: [7; 32],
            },
            Message::Clock(vec![
                ClockItem {
                    short: [1; 8],
                    latest: 0,
                    low: 0,
                    forked: false,
                },
                ClockItem {
                    short: [2; 8],
                    latest: 500,
                    low: 3,
                    forked: true,
                },
            ]),
            Message::Plan {
                entries: 5,
                feeds: 2,
            },
            Message::Done,
            Message::Inventory {
                shorts: vec![[1; 8], [2; 8]],
                last: true,
            },
            Message::Inventory {
                shorts: vec![],
                last: false,
            },
            Message::Envelopes(vec![vec![2; 73 + 256]]),
            Message::Acks(vec![[3; 32], [4; 32]]),
            Message::Buckets {
                bits: 4,
                digests: (0..16u8).map(|i| [i; 8]).collect(),
            },
        ];
        for m in msgs {
            let b = m.encode();
            assert_eq!(Message::decode(&b).unwrap(), m);
            let mut trailing = b.clone();
            trailing.push(0);
            assert!(Message::decode(&trailing).is_err());
            assert!(Message::decode(&b[..b.len() - 1]).is_err() || b.len() == 1);
        }
        assert!(Message::decode(&[0x42]).is_err());
        assert!(Message::decode(&[]).is_err());
        // A count far beyond the frame's size is refused before allocating.
        let mut huge = vec![T_ENTRIES];
        put_varint(&mut huge, u64::MAX);
        assert!(Message::decode(&huge).is_err());
        // Buckets: bits out of range, or fewer digests than 2^bits.
        assert!(Message::decode(&[T_BUCKETS, 3]).is_err());
        assert!(Message::decode(&[T_BUCKETS, 9]).is_err());
        let mut short = vec![T_BUCKETS, 4];
        short.extend_from_slice(&[0; 15 * 8]);
        assert!(Message::decode(&short).is_err());
        // Clock low above latest.
        let mut bad = vec![T_CLOCK, 1];
        bad.extend_from_slice(&[0; 8]);
        bad.extend_from_slice(&[5, 12]);
        assert!(Message::decode(&bad).is_err());
    }
}
