//! The records and enums apps receive: plain values, ids as their printable
//! strings (`stl1…` authors, `stle1…` entries, `stlb1…` blobs).

use starling_core::feed::BlobRef as CoreBlobRef;
use starling_core::node::{
    IngestReport, Notification as CoreNotification, NotificationKind as CoreKind, Page,
    PostView as CorePostView, ProfileView as CoreProfileView,
};

/// How to open a node. More settings (sync peers, limits) will be added in
/// later releases, always with defaults, so code written now keeps compiling.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NodeConfig {
    /// Directory that holds this node's data (created if missing), e.g.
    /// `context.filesDir/starling` on Android or Application Support on iOS.
    /// One node per directory; use the same directory on every launch.
    pub data_dir: String,
}

/// A newly created identity.
#[derive(Clone, uniffi::Record)]
pub struct NewIdentity {
    /// The author id of the new feed (`stl1…`): share it so others can follow.
    pub author_id: String,
    /// The 24-word recovery phrase, words separated by single spaces. Show it
    /// to the user once to write down; it restores the identity on another
    /// device. Never log it, store it or send it anywhere.
    pub recovery_phrase: String,
}

impl std::fmt::Debug for NewIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewIdentity")
            .field("author_id", &self.author_id)
            .field("recovery_phrase", &"<redacted>")
            .finish()
    }
}

/// A file (image, video…) attached to a post, referenced by content hash.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BlobRef {
    /// The blob id (`stlb1…`), the BLAKE3 hash of its bytes.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type, e.g. `image/jpeg`.
    pub mime: String,
}

impl From<CoreBlobRef> for BlobRef {
    fn from(b: CoreBlobRef) -> Self {
        BlobRef {
            id: b.id.to_string(),
            size: b.size,
            mime: b.mime,
        }
    }
}

/// How many authors reacted to an entry with one emoji.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReactionCount {
    /// The reaction, usually one emoji.
    pub emoji: String,
    /// Number of distinct authors who reacted with it.
    pub count: u64,
}

pub(crate) fn reaction_counts(v: Vec<(String, u64)>) -> Vec<ReactionCount> {
    v.into_iter()
        .map(|(emoji, count)| ReactionCount { emoji, count })
        .collect()
}

/// A post as shown in a timeline, feed, thread or search result.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PostView {
    /// Entry id of the post (`stle1…`): pass it to `reply`, `react`, `thread`…
    pub id: String,
    /// Who wrote it (`stl1…`).
    pub author: String,
    /// The author's display name from their latest profile, if known.
    pub author_name: Option<String>,
    /// Position of the post in its author's feed (1, 2, …).
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch (as claimed
    /// by the author's device).
    pub timestamp_ms: u64,
    /// The text; `null`/`nil` when the post was deleted.
    pub text: Option<String>,
    /// The post this one replies to, if it is a reply.
    pub reply_to: Option<String>,
    /// The first post of the thread this reply belongs to.
    pub root: Option<String>,
    /// Authors mentioned with `@stl1…` in the text.
    pub mentions: Vec<String>,
    /// Attached files.
    pub attachments: Vec<BlobRef>,
    /// True when the author deleted the post (text and attachments are gone).
    pub deleted: bool,
    /// Reaction counts, most frequent first.
    pub reactions: Vec<ReactionCount>,
}

impl From<CorePostView> for PostView {
    fn from(p: CorePostView) -> Self {
        PostView {
            id: p.id.to_string(),
            author: p.author.to_string(),
            author_name: p.author_name,
            seq: p.seq,
            timestamp_ms: p.timestamp_ms,
            text: p.text,
            reply_to: p.reply_to.map(|e| e.to_string()),
            root: p.root.map(|e| e.to_string()),
            mentions: p.mentions.iter().map(ToString::to_string).collect(),
            attachments: p.attachments.into_iter().map(Into::into).collect(),
            deleted: p.deleted,
            reactions: reaction_counts(p.reactions),
        }
    }
}

/// One page of posts, newest first.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PostPage {
    /// The posts of this page.
    pub items: Vec<PostView>,
    /// Pass this as `before` to get the next (older) page; `null`/`nil` when
    /// there are no more posts.
    pub next_cursor: Option<String>,
}

impl From<Page<CorePostView>> for PostPage {
    fn from(p: Page<CorePostView>) -> Self {
        PostPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next.map(|c| c.to_string()),
        }
    }
}

/// Why a notification was raised.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum NotificationKind {
    /// Someone replied to one of your posts.
    Reply,
    /// Someone mentioned you in a post.
    Mention,
    /// Someone reacted to one of your entries.
    Reaction {
        /// The reaction.
        emoji: String,
    },
}

/// Something another author did that concerns you.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Notification {
    /// What happened.
    pub kind: NotificationKind,
    /// The entry that caused it (the reply, the mentioning post, the reaction).
    pub entry: String,
    /// Who did it (`stl1…`).
    pub from: String,
    /// Your entry it concerns (the post replied or reacted to; for a mention,
    /// the mentioning post itself).
    pub subject: String,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl From<CoreNotification> for Notification {
    fn from(n: CoreNotification) -> Self {
        Notification {
            kind: match n.kind {
                CoreKind::Reply => NotificationKind::Reply,
                CoreKind::Mention => NotificationKind::Mention,
                CoreKind::Reaction { emoji } => NotificationKind::Reaction { emoji },
            },
            entry: n.entry.to_string(),
            from: n.from.to_string(),
            subject: n.subject.to_string(),
            timestamp_ms: n.timestamp_ms,
        }
    }
}

/// One page of notifications, newest first.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NotificationPage {
    /// The notifications of this page.
    pub items: Vec<Notification>,
    /// Pass this as `before` to get the next (older) page; `null`/`nil` when
    /// there are no more.
    pub next_cursor: Option<String>,
}

impl From<Page<CoreNotification>> for NotificationPage {
    fn from(p: Page<CoreNotification>) -> Self {
        NotificationPage {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next.map(|c| c.to_string()),
        }
    }
}

/// An author's profile as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProfileView {
    /// The author (`stl1…`).
    pub author: String,
    /// Display name from their latest profile entry.
    pub name: Option<String>,
    /// Self-description from their latest profile entry.
    pub about: Option<String>,
    /// Avatar image, if they set one.
    pub avatar: Option<BlobRef>,
    /// How many authors they follow (as far as this node knows).
    pub following: u64,
    /// How many known authors follow them.
    pub followers: u64,
    /// True if their feed is known to have forked (two different entries at
    /// the same position): show a warning, their device or key may be
    /// compromised.
    pub forked: bool,
}

impl From<CoreProfileView> for ProfileView {
    fn from(p: CoreProfileView) -> Self {
        ProfileView {
            author: p.author.to_string(),
            name: p.name,
            about: p.about,
            avatar: p.avatar.map(Into::into),
            following: p.following,
            followers: p.followers,
            forked: p.forked,
        }
    }
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ImportReport {
    /// New entries stored.
    pub accepted: u64,
    /// Entries already held; skipped.
    pub duplicates: u64,
    /// Conflicting second entries kept as evidence that a feed forked.
    pub forks: u64,
    /// Entries of blocked authors, dropped.
    pub blocked: u64,
}

impl From<IngestReport> for ImportReport {
    fn from(r: IngestReport) -> Self {
        ImportReport {
            accepted: r.accepted,
            duplicates: r.duplicates,
            forks: r.forks,
            blocked: r.blocked,
        }
    }
}
