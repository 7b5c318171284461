//! Payload types: what an entry says. Each is versioned by its one-byte tag
//! (a new version of a type takes a new tag) and has explicit size limits.
//!
//! Encoding (see docs/PROTOCOL.md): the tag byte, then the type's fields in
//! order. Integers are big-endian; text is UTF-8 after a `u8` or `u16` length;
//! an optional value is `0x00`, or `0x01` followed by the value; a list is a
//! `u8` count followed by the items. Decoding is total and canonical: every
//! value has exactly one encoding and anything else is a typed error.
//! Tags this build does not know decode to [`Payload::Unknown`], which is
//! stored and passed on to peers but not shown.

use crate::encoding::{DecodeError, Reader, Writer};
use crate::identity::id::{AuthorId, BlobId, EntryId};

/// Size limits of the payload types, in bytes or items.
pub mod limits {
    /// Post text, in UTF-8 bytes.
    pub const POST_TEXT_MAX: usize = 8192;
    /// Mentioned authors per post.
    pub const MENTIONS_MAX: usize = 32;
    /// Attachments per post.
    pub const ATTACHMENTS_MAX: usize = 8;
    /// A MIME type, ASCII.
    pub const MIME_MAX: usize = 64;
    /// A reaction (usually one emoji), in UTF-8 bytes.
    pub const REACTION_MAX: usize = 64;
    /// A profile name, in UTF-8 bytes.
    pub const NAME_MAX: usize = 64;
    /// A profile's about text, in UTF-8 bytes.
    pub const ABOUT_MAX: usize = 1024;
    /// One-time prekeys in one prekey bundle.
    pub const ONE_TIME_PREKEYS_MAX: usize = 100;
}

use limits::*;

/// The tag byte of each payload type this build understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PayloadTag {
    /// [`Payload::Post`], version 1.
    Post = 0x01,
    /// [`Payload::Reaction`], version 1.
    Reaction = 0x02,
    /// [`Payload::Follow`], version 1.
    Follow = 0x03,
    /// [`Payload::Unfollow`], version 1.
    Unfollow = 0x04,
    /// [`Payload::Block`], version 1.
    Block = 0x05,
    /// [`Payload::Unblock`], version 1.
    Unblock = 0x06,
    /// [`Payload::Profile`], version 1.
    Profile = 0x07,
    /// [`Payload::Delete`], version 1.
    Delete = 0x08,
    /// [`Payload::EncryptionKey`], version 1.
    EncryptionKey = 0x09,
    /// [`Payload::PrekeyBundle`], version 1 (end-to-end messaging).
    PrekeyBundle = 0x0B,
}

/// Reserved for linking a further device's feed to an identity (one person,
/// several devices): an entry with this tag, signed by the identity's feed,
/// will name the device's feed key and carry the device key's counter-signature.
pub const RESERVED_DEVICE_LINK_TAG: u8 = 0x0A;

/// A reference to a content-addressed attachment (an image, an avatar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// BLAKE3 hash of the blob's bytes.
    pub id: BlobId,
    /// The blob's size in bytes.
    pub size: u64,
    /// Its MIME type, e.g. `image/jpeg` (printable ASCII, at most 64 bytes).
    pub mime: String,
}

/// A post: text, optionally a reply within a thread, with mentions and attachments.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Post {
    /// The text (at most 8192 UTF-8 bytes; may be empty only with attachments).
    pub text: String,
    /// The entry this replies to.
    pub reply_to: Option<EntryId>,
    /// The thread's root; present exactly when `reply_to` is.
    pub root: Option<EntryId>,
    /// Mentioned authors (at most 32, no repeats).
    pub mentions: Vec<AuthorId>,
    /// Attachments (at most 8).
    pub attachments: Vec<BlobRef>,
}

/// A profile update: the latest one per author wins.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Profile {
    /// Display name (at most 64 UTF-8 bytes).
    pub name: String,
    /// About text (at most 1024 UTF-8 bytes).
    pub about: String,
    /// Avatar image.
    pub avatar: Option<BlobRef>,
}

/// Publishes the author's X25519 encryption key, bound to the feed key by a
/// domain-separated Ed25519 signature (see `identity::binding`), so that
/// others can encrypt to the author.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionKeyAnnouncement {
    /// The X25519 public key.
    pub x25519_public: [u8; 32],
    /// When the binding was made, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Ed25519 signature binding the key to the author.
    pub binding_signature: [u8; 64],
}

/// One X25519 one-time prekey in a [`PrekeyBundle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimePrekey {
    /// The id the initiator names when it uses this key.
    pub id: u32,
    /// The X25519 public key.
    pub public: [u8; 32],
}

/// An X3DH prekey bundle (see `messaging::x3dh` and docs/PROTOCOL.md §3):
/// what others need to start an end-to-end encrypted session with the
/// author while they are offline. Decoding checks only the shape; the
/// signature and keys are checked by `messaging::x3dh::verify_bundle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The author's X25519 identity key (the key bound to the feed key).
    pub identity_dh: [u8; 32],
    /// Id of the signed prekey.
    pub signed_prekey_id: u32,
    /// The X25519 signed prekey, rotated periodically.
    pub signed_prekey: [u8; 32],
    /// When this bundle was made, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// One-time prekeys, ids strictly increasing (at most 100).
    pub one_time_prekeys: Vec<OneTimePrekey>,
    /// Ed25519 signature by the author over the domain-separated bundle.
    pub signature: [u8; 64],
}

/// What an entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A post or reply.
    Post(Post),
    /// A reaction to an entry.
    Reaction {
        /// The entry reacted to.
        target: EntryId,
        /// The reaction, usually one emoji (1 to 64 UTF-8 bytes).
        emoji: String,
    },
    /// Start following an author.
    Follow(AuthorId),
    /// Stop following an author.
    Unfollow(AuthorId),
    /// Block an author: never show or replicate their feed.
    Block(AuthorId),
    /// Lift a block.
    Unblock(AuthorId),
    /// Profile update.
    Profile(Profile),
    /// Delete one of the author's own earlier entries' payload.
    Delete(EntryId),
    /// Encryption key announcement.
    EncryptionKey(EncryptionKeyAnnouncement),
    /// X3DH prekey bundle for end-to-end encrypted messaging.
    PrekeyBundle(PrekeyBundle),
    /// A type from a newer version: stored and forwarded, not shown.
    Unknown {
        /// Its tag byte.
        tag: u8,
        /// Everything after the tag.
        body: Vec<u8>,
    },
}

impl Payload {
    /// The payload's tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            Payload::Post(_) => PayloadTag::Post as u8,
            Payload::Reaction { .. } => PayloadTag::Reaction as u8,
            Payload::Follow(_) => PayloadTag::Follow as u8,
            Payload::Unfollow(_) => PayloadTag::Unfollow as u8,
            Payload::Block(_) => PayloadTag::Block as u8,
            Payload::Unblock(_) => PayloadTag::Unblock as u8,
            Payload::Profile(_) => PayloadTag::Profile as u8,
            Payload::Delete(_) => PayloadTag::Delete as u8,
            Payload::EncryptionKey(_) => PayloadTag::EncryptionKey as u8,
            Payload::PrekeyBundle(_) => PayloadTag::PrekeyBundle as u8,
            Payload::Unknown { tag, .. } => *tag,
        }
    }

    /// Checks every size and shape limit; [`Payload::encode`] output of a
    /// value that passes always decodes back to it.
    pub fn validate_limits(&self) -> Result<(), DecodeError> {
        // Encoding then decoding applies exactly the decoder's rules, so the
        // two can never disagree about what is acceptable.
        let bytes = self.encode_unchecked();
        if bytes.len() > crate::feed::MAX_PAYLOAD_LEN as usize {
            return Err(DecodeError::TooLong {
                field: "payload",
                len: bytes.len(),
                max: crate::feed::MAX_PAYLOAD_LEN as usize,
            });
        }
        match Payload::decode(&bytes) {
            Ok(decoded) if &decoded == self => Ok(()),
            Ok(_) => Err(DecodeError::InvalidField {
                field: "payload",
                reason: "a length exceeds what its prefix can hold".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Encodes after checking limits; the error says which limit was broken.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        self.validate_limits()?;
        Ok(self.encode_unchecked())
    }

    fn encode_unchecked(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.u8(self.tag());
        match self {
            Payload::Post(post) => {
                // Lengths are truncated to their prefix width here; the
                // decode in `validate_limits` then sees a mismatch and refuses.
                w.u16(post.text.len() as u16).bytes(post.text.as_bytes());
                write_opt_id(&mut w, post.reply_to.as_ref().map(EntryId::as_bytes));
                write_opt_id(&mut w, post.root.as_ref().map(EntryId::as_bytes));
                w.u8(post.mentions.len() as u8);
                for m in &post.mentions {
                    w.bytes(m.as_bytes());
                }
                w.u8(post.attachments.len() as u8);
                for a in &post.attachments {
                    write_blob_ref(&mut w, a);
                }
            }
            Payload::Reaction { target, emoji } => {
                w.bytes(target.as_bytes())
                    .u8(emoji.len() as u8)
                    .bytes(emoji.as_bytes());
            }
            Payload::Follow(a) | Payload::Unfollow(a) | Payload::Block(a) | Payload::Unblock(a) => {
                w.bytes(a.as_bytes());
            }
            Payload::Profile(p) => {
                w.u8(p.name.len() as u8).bytes(p.name.as_bytes());
                w.u16(p.about.len() as u16).bytes(p.about.as_bytes());
                match &p.avatar {
                    None => w.u8(0),
                    Some(a) => {
                        w.u8(1);
                        write_blob_ref(&mut w, a);
                        &mut w
                    }
                };
            }
            Payload::Delete(target) => {
                w.bytes(target.as_bytes());
            }
            Payload::EncryptionKey(k) => {
                w.bytes(&k.x25519_public)
                    .u64(k.created_at_ms)
                    .bytes(&k.binding_signature);
            }
            Payload::PrekeyBundle(b) => {
                w.bytes(&b.identity_dh)
                    .u32(b.signed_prekey_id)
                    .bytes(&b.signed_prekey)
                    .u64(b.created_at_ms)
                    .u8(b.one_time_prekeys.len() as u8);
                for k in &b.one_time_prekeys {
                    w.u32(k.id).bytes(&k.public);
                }
                w.bytes(&b.signature);
            }
            Payload::Unknown { body, .. } => {
                w.bytes(body);
            }
        }
        w.into_bytes()
    }

    /// Decodes untrusted payload bytes. Total and canonical.
    pub fn decode(bytes: &[u8]) -> Result<Payload, DecodeError> {
        let max = crate::feed::MAX_PAYLOAD_LEN as usize;
        if bytes.len() > max {
            return Err(DecodeError::TooLong {
                field: "payload",
                len: bytes.len(),
                max,
            });
        }
        let mut r = Reader::new(bytes);
        let tag = r.u8("payload tag")?;
        let payload = match tag {
            0x01 => Payload::Post(read_post(&mut r)?),
            0x02 => {
                let target = EntryId(r.array("reaction target")?);
                let len = r.u8("reaction length")? as usize;
                let emoji = r.text(len, REACTION_MAX, "reaction")?;
                if emoji.is_empty() {
                    return Err(DecodeError::InvalidField {
                        field: "reaction",
                        reason: "empty".into(),
                    });
                }
                Payload::Reaction { target, emoji }
            }
            0x03 => Payload::Follow(AuthorId(r.array("follow target")?)),
            0x04 => Payload::Unfollow(AuthorId(r.array("unfollow target")?)),
            0x05 => Payload::Block(AuthorId(r.array("block target")?)),
            0x06 => Payload::Unblock(AuthorId(r.array("unblock target")?)),
            0x07 => {
                let len = r.u8("name length")? as usize;
                let name = r.text(len, NAME_MAX, "name")?;
                let len = r.u16("about length")? as usize;
                let about = r.text(len, ABOUT_MAX, "about")?;
                let avatar = if r.flag("avatar")? {
                    Some(read_blob_ref(&mut r)?)
                } else {
                    None
                };
                Payload::Profile(Profile {
                    name,
                    about,
                    avatar,
                })
            }
            0x08 => Payload::Delete(EntryId(r.array("delete target")?)),
            0x09 => Payload::EncryptionKey(EncryptionKeyAnnouncement {
                x25519_public: r.array("x25519 key")?,
                created_at_ms: r.u64("created_at")?,
                binding_signature: r.array("binding signature")?,
            }),
            0x0B => Payload::PrekeyBundle(read_prekey_bundle(&mut r)?),
            tag => {
                let body = r.take(r.remaining(), "body")?.to_vec();
                Payload::Unknown { tag, body }
            }
        };
        r.finish()?;
        Ok(payload)
    }
}

fn write_opt_id(w: &mut Writer, id: Option<&[u8; 32]>) {
    match id {
        None => w.u8(0),
        Some(id) => w.u8(1).bytes(id),
    };
}

fn write_blob_ref(w: &mut Writer, b: &BlobRef) {
    w.bytes(b.id.as_bytes())
        .u64(b.size)
        .u8(b.mime.len() as u8)
        .bytes(b.mime.as_bytes());
}

fn read_opt_id(r: &mut Reader<'_>, field: &'static str) -> Result<Option<EntryId>, DecodeError> {
    Ok(if r.flag(field)? {
        Some(EntryId(r.array(field)?))
    } else {
        None
    })
}

fn read_blob_ref(r: &mut Reader<'_>) -> Result<BlobRef, DecodeError> {
    let id = BlobId(r.array("blob id")?);
    let size = r.u64("blob size")?;
    let len = r.u8("mime length")? as usize;
    let mime = r.text(len, MIME_MAX, "mime")?;
    if mime.is_empty() || !mime.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DecodeError::InvalidField {
            field: "mime",
            reason: "must be non-empty printable ASCII".into(),
        });
    }
    Ok(BlobRef { id, size, mime })
}

fn read_prekey_bundle(r: &mut Reader<'_>) -> Result<PrekeyBundle, DecodeError> {
    let identity_dh = r.array("identity key")?;
    let signed_prekey_id = r.u32("signed prekey id")?;
    let signed_prekey = r.array("signed prekey")?;
    let created_at_ms = r.u64("bundle created_at")?;
    let count = r.u8("one-time prekey count")? as usize;
    if count > ONE_TIME_PREKEYS_MAX {
        return Err(DecodeError::TooLong {
            field: "one-time prekeys",
            len: count,
            max: ONE_TIME_PREKEYS_MAX,
        });
    }
    let mut one_time_prekeys: Vec<OneTimePrekey> = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.u32("one-time prekey id")?;
        // Strictly increasing ids: no repeats, one canonical order.
        if one_time_prekeys.last().is_some_and(|prev| prev.id >= id) {
            return Err(DecodeError::InvalidField {
                field: "one-time prekeys",
                reason: "ids must be strictly increasing".into(),
            });
        }
        one_time_prekeys.push(OneTimePrekey {
            id,
            public: r.array("one-time prekey")?,
        });
    }
    let signature = r.array("bundle signature")?;
    Ok(PrekeyBundle {
        identity_dh,
        signed_prekey_id,
        signed_prekey,
        created_at_ms,
        one_time_prekeys,
        signature,
    })
}

fn read_post(r: &mut Reader<'_>) -> Result<Post, DecodeError> {
    let len = r.u16("text length")? as usize;
    let text = r.text(len, POST_TEXT_MAX, "post text")?;
    let reply_to = read_opt_id(r, "reply_to")?;
    let root = read_opt_id(r, "root")?;
    if reply_to.is_some() != root.is_some() {
        return Err(DecodeError::InvalidField {
            field: "root",
            reason: "a reply names its thread root, and only a reply does".into(),
        });
    }
    let count = r.u8("mention count")? as usize;
    if count > MENTIONS_MAX {
        return Err(DecodeError::TooLong {
            field: "mentions",
            len: count,
            max: MENTIONS_MAX,
        });
    }
    let mut mentions = Vec::with_capacity(count);
    for _ in 0..count {
        let m = AuthorId(r.array("mention")?);
        if mentions.contains(&m) {
            return Err(DecodeError::InvalidField {
                field: "mentions",
                reason: "repeated author".into(),
            });
        }
        mentions.push(m);
    }
    let count = r.u8("attachment count")? as usize;
    if count > ATTACHMENTS_MAX {
        return Err(DecodeError::TooLong {
            field: "attachments",
            len: count,
            max: ATTACHMENTS_MAX,
        });
    }
    let mut attachments = Vec::with_capacity(count);
    for _ in 0..count {
        attachments.push(read_blob_ref(r)?);
    }
    if text.is_empty() && attachments.is_empty() {
        return Err(DecodeError::InvalidField {
            field: "post",
            reason: "neither text nor attachments".into(),
        });
    }
    Ok(Post {
        text,
        reply_to,
        root,
        mentions,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_post() -> Payload {
        Payload::Post(Post {
            text: "hello 🐦".into(),
            reply_to: Some(EntryId([1; 32])),
            root: Some(EntryId([2; 32])),
            mentions: vec![AuthorId([3; 32])],
            attachments: vec![BlobRef {
                id: BlobId([4; 32]),
                size: 1234,
                mime: "image/png".into(),
            }],
        })
    }

    #[test]
    fn every_type_round_trips() {
        let all = vec![
            sample_post(),
            Payload::Reaction {
                target: EntryId([5; 32]),
                emoji: "👍".into(),
            },
            Payload::Follow(AuthorId([6; 32])),
            Payload::Unfollow(AuthorId([6; 32])),
            Payload::Block(AuthorId([7; 32])),
            Payload::Unblock(AuthorId([7; 32])),
            Payload::Profile(Profile {
                name: "Ada".into(),
                about: "math".into(),
                avatar: None,
            }),
            Payload::Delete(EntryId([8; 32])),
            Payload::EncryptionKey(EncryptionKeyAnnouncement {
                x25519_public: [9; 32],
                created_at_ms: 42,
                binding_signature: [10; 64],
            }),
            Payload::PrekeyBundle(sample_bundle()),
            Payload::Unknown {
                tag: 0x7f,
                body: vec![1, 2, 3],
            },
        ];
        for p in all {
            let bytes = p.encode().expect("within limits");
            assert_eq!(bytes[0], p.tag());
            assert_eq!(Payload::decode(&bytes), Ok(p));
        }
    }

    fn sample_bundle() -> PrekeyBundle {
        PrekeyBundle {
            identity_dh: [1; 32],
            signed_prekey_id: 7,
            signed_prekey: [2; 32],
            created_at_ms: 1_700_000_000_000,
            one_time_prekeys: vec![
                OneTimePrekey {
                    id: 1,
                    public: [3; 32],
                },
                OneTimePrekey {
                    id: 2,
                    public: [4; 32],
                },
            ],
            signature: [5; 64],
        }
    }

    #[test]
    fn prekey_bundle_layout_and_limits() {
        let b = sample_bundle();
        let bytes = Payload::PrekeyBundle(b.clone()).encode().expect("valid");
        assert_eq!(bytes[0], 0x0B);
        assert_eq!(bytes.len(), 1 + 32 + 4 + 32 + 8 + 1 + 2 * 36 + 64);
        // Too many one-time prekeys.
        let mut many = b.clone();
        many.one_time_prekeys = (0..=ONE_TIME_PREKEYS_MAX as u32)
            .map(|id| OneTimePrekey {
                id,
                public: [9; 32],
            })
            .collect();
        assert!(Payload::PrekeyBundle(many).encode().is_err());
        // Repeated or unordered ids.
        let mut dup = b.clone();
        dup.one_time_prekeys[1].id = 1;
        assert!(Payload::PrekeyBundle(dup).encode().is_err());
        // The maximum fits in a payload.
        let mut max = b;
        max.one_time_prekeys = (0..ONE_TIME_PREKEYS_MAX as u32)
            .map(|id| OneTimePrekey {
                id,
                public: [9; 32],
            })
            .collect();
        Payload::PrekeyBundle(max)
            .encode()
            .expect("100 one-time prekeys fit");
        // Truncation and trailing bytes.
        assert!(Payload::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(Payload::decode(&longer).is_err());
    }

    #[test]
    fn limits_are_enforced_on_both_sides() {
        let long = Payload::Post(Post {
            text: "a".repeat(POST_TEXT_MAX + 1),
            ..Post::default()
        });
        assert!(matches!(
            long.encode(),
            Err(DecodeError::TooLong {
                field: "post text",
                ..
            })
        ));
        let many = Payload::Post(Post {
            text: "hi".into(),
            mentions: (0..=MENTIONS_MAX as u8)
                .map(|i| AuthorId([i; 32]))
                .collect(),
            ..Post::default()
        });
        assert!(many.encode().is_err());
        let empty = Payload::Post(Post::default());
        assert!(empty.encode().is_err());
        let orphan_root = Payload::Post(Post {
            text: "x".into(),
            root: Some(EntryId([1; 32])),
            ..Post::default()
        });
        assert!(orphan_root.encode().is_err());
        let name = Payload::Profile(Profile {
            name: "n".repeat(NAME_MAX + 1),
            ..Profile::default()
        });
        assert!(name.encode().is_err());
        // Exactly 256 bytes would wrap a u8 length prefix; it must be refused, not aliased.
        let wrap = Payload::Reaction {
            target: EntryId([0; 32]),
            emoji: "e".repeat(256),
        };
        assert!(wrap.encode().is_err());
    }

    #[test]
    fn non_canonical_forms_are_refused() {
        let mut bytes = sample_post().encode().expect("valid");
        bytes.push(0);
        assert_eq!(Payload::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
        // reply_to flag of 2
        let mut bytes = Payload::Post(Post {
            text: "x".into(),
            ..Post::default()
        })
        .encode()
        .expect("valid");
        bytes[4] = 2;
        assert!(matches!(
            Payload::decode(&bytes),
            Err(DecodeError::BadFlag { .. })
        ));
        // invalid UTF-8
        let bytes = [0x01, 0x00, 0x01, 0xff, 0, 0, 0, 0];
        assert_eq!(
            Payload::decode(&bytes),
            Err(DecodeError::InvalidUtf8("post text"))
        );
        assert!(matches!(
            Payload::decode(&[]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    fn arb_text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..16).prop_map(move |cs| {
            let mut s = String::new();
            for c in cs {
                if s.len() + c.len_utf8() <= max {
                    s.push(c);
                }
            }
            s
        })
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        let id = any::<[u8; 32]>();
        prop_oneof![
            (
                arb_text(POST_TEXT_MAX),
                proptest::option::of((id, id)),
                proptest::collection::btree_set(id, 0..4)
            )
                .prop_map(|(text, reply, mentions)| {
                    Payload::Post(Post {
                        text: if text.is_empty() { "x".into() } else { text },
                        reply_to: reply.map(|(a, _)| EntryId(a)),
                        root: reply.map(|(_, b)| EntryId(b)),
                        mentions: mentions.into_iter().map(AuthorId).collect(),
                        attachments: vec![],
                    })
                }),
            (id, arb_text(REACTION_MAX)).prop_map(|(t, e)| Payload::Reaction {
                target: EntryId(t),
                emoji: if e.is_empty() { "+".into() } else { e }
            }),
            id.prop_map(|a| Payload::Follow(AuthorId(a))),
            (arb_text(NAME_MAX), arb_text(ABOUT_MAX)).prop_map(|(name, about)| Payload::Profile(
                Profile {
                    name,
                    about,
                    avatar: None
                }
            )),
            (0x10u8..=0xff, proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(|(tag, body)| Payload::Unknown { tag, body }),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(p in arb_payload()) {
            let bytes = p.encode().expect("generated within limits");
            prop_assert_eq!(Payload::decode(&bytes), Ok(p));
        }

        #[test]
        fn decoding_never_panics_and_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(p) = Payload::decode(&bytes) {
                prop_assert_eq!(p.encode().ok(), Some(bytes));
            }
        }

        #[test]
        fn decoding_known_tags_never_panics(tag in 1u8..=11, rest in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = vec![tag];
            bytes.extend(rest);
            if let Ok(p) = Payload::decode(&bytes) {
                prop_assert_eq!(p.encode().ok(), Some(bytes));
            }
        }
    }
}
