//! End-to-end encrypted direct and group messages, wrapped thinly over the
//! core's `Node::with_messaging` and `Node::flush_outbox`.
//!
//! Sending encrypts on this device and queues the envelope; while
//! networking runs, sync sessions carry it to the recipient (directly or
//! through peers that store and forward it blind). Received messages are
//! decrypted as they arrive and kept (sealed) in the local history.

use std::str::FromStr;

use starling_core::AuthorId;
use starling_core::messaging::{
    Conversation as CoreConversation, GroupId, GroupInfo as CoreGroupInfo, Messaging,
    StoredMessage, TrustState as CoreTrust,
};

use crate::error::StarlingError;
use crate::node::StarlingNode;

fn author(s: &str) -> Result<AuthorId, StarlingError> {
    Ok(AuthorId::from_str(s.trim())?)
}

fn group(s: &str) -> Result<GroupId, StarlingError> {
    hex::decode(s.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(GroupId)
        .ok_or_else(|| StarlingError::InvalidId {
            detail: format!("invalid group id {s:?}: expected 64 hex digits"),
        })
}

fn group_hex(g: &GroupId) -> String {
    hex::encode(g.0)
}

/// Who a conversation is with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Conversation {
    /// A 1:1 conversation with a contact.
    Direct {
        /// The contact's author id (`stl1…`).
        author_id: String,
    },
    /// A group conversation.
    Group {
        /// The group id (64 hex digits).
        group_id: String,
    },
}

impl From<CoreConversation> for Conversation {
    fn from(c: CoreConversation) -> Self {
        match c {
            CoreConversation::Direct(a) => Conversation::Direct {
                author_id: a.to_string(),
            },
            CoreConversation::Group(g) => Conversation::Group {
                group_id: group_hex(&g),
            },
        }
    }
}

impl Conversation {
    fn to_core(&self) -> Result<CoreConversation, StarlingError> {
        Ok(match self {
            Conversation::Direct { author_id } => CoreConversation::Direct(author(author_id)?),
            Conversation::Group { group_id } => CoreConversation::Group(group(group_id)?),
        })
    }
}

/// One line of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// The group's name (group conversations only).
    pub name: Option<String>,
    /// Time of its latest message, in milliseconds since the Unix epoch.
    pub last_at_ms: u64,
    /// Number of messages.
    pub message_count: u64,
}

/// A message of a conversation's history (decrypted).
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Message {
    /// Its id in the local history.
    pub id: i64,
    /// The conversation it belongs to.
    pub conversation: Conversation,
    /// Who sent it (`stl1…`), authenticated end to end.
    pub sender: String,
    /// True if this device sent it.
    pub outgoing: bool,
    /// When it was sent (the sender's clock), ms since the Unix epoch.
    pub at_ms: u64,
    /// The text.
    pub text: String,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Message text is private: never in logs.
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .field("outgoing", &self.outgoing)
            .finish_non_exhaustive()
    }
}

impl From<StoredMessage> for Message {
    fn from(m: StoredMessage) -> Self {
        Message {
            id: m.id,
            conversation: m.conversation.into(),
            sender: m.sender.to_string(),
            outgoing: m.outgoing,
            at_ms: m.at_ms,
            text: m.text,
        }
    }
}

/// How far a contact's identity key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TrustState {
    /// First seen and pinned, safety numbers not compared yet.
    Unverified,
    /// The user compared safety numbers (`markVerified`).
    Verified,
    /// The key differs from the pinned one: sending is blocked until the
    /// user re-verifies (`markVerified`) or accepts (`acceptIdentityChange`).
    Changed,
}

impl From<CoreTrust> for TrustState {
    fn from(t: CoreTrust) -> Self {
        match t {
            CoreTrust::Unverified => TrustState::Unverified,
            CoreTrust::Verified => TrustState::Verified,
            CoreTrust::Changed => TrustState::Changed,
        }
    }
}

/// A group as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupInfo {
    /// Its id (64 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Current members (`stl1…`).
    pub members: Vec<String>,
    /// Current admins (`stl1…`).
    pub admins: Vec<String>,
    /// Key epoch: how many times members were removed.
    pub epoch: u32,
    /// Whether you are still a member.
    pub is_member: bool,
}

impl From<CoreGroupInfo> for GroupInfo {
    fn from(g: CoreGroupInfo) -> Self {
        GroupInfo {
            id: group_hex(&g.id),
            name: g.name,
            members: g.members.iter().map(ToString::to_string).collect(),
            admins: g.admins.iter().map(ToString::to_string).collect(),
            epoch: g.epoch,
            is_member: g.is_member,
        }
    }
}

impl StarlingNode {
    /// Runs `f` with the messaging engine on the blocking pool; with
    /// `deliver`, then hands queued envelopes to the carrier so running
    /// sync sessions push them at once.
    async fn with_messaging<T, F>(&self, deliver: bool, f: F) -> Result<T, StarlingError>
    where
        T: Send + 'static,
        F: FnOnce(&Messaging<'_>) -> Result<T, StarlingError> + Send + 'static,
    {
        self.with_node(move |n| {
            let out = n.with_messaging(f)??;
            if deliver {
                n.flush_outbox()?;
            }
            Ok(out)
        })
        .await
    }
}

#[uniffi::export]
impl StarlingNode {
    // ----- direct messages ----------------------------------------------

    /// Sends `text` (at most 8192 bytes) end to end encrypted to the
    /// contact `authorId`. It is stored in your history at once and
    /// delivered while networking runs (directly, or through peers that
    /// carry it without being able to read it).
    ///
    /// The first message needs the contact's prekey bundle, which arrives
    /// with their feed: follow them and sync first.
    ///
    /// Throws `NoPrekeyBundle` if no bundle of theirs is stored yet,
    /// `IdentityKeyChanged` while their changed key is not accepted,
    /// `InvalidInput` (too long, yourself), `InvalidId`, `NoIdentity`,
    /// `Locked`, `Closed`.
    pub async fn send_dm(&self, author_id: String, text: String) -> Result<(), StarlingError> {
        let to = author(&author_id)?;
        self.with_messaging(true, move |m| {
            m.encrypt_dm(&to, None, &text)?;
            Ok(())
        })
        .await
    }

    /// Conversations (direct and group) with messages, most recent first.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, StarlingError> {
        self.with_messaging(false, |m| {
            let mut out = Vec::new();
            for c in m.conversations()? {
                let name = match &c.conversation {
                    CoreConversation::Group(g) => m.group_info(g).ok().map(|i| i.name),
                    CoreConversation::Direct(_) => None,
                };
                out.push(ConversationSummary {
                    conversation: c.conversation.into(),
                    name,
                    last_at_ms: c.last_at_ms,
                    message_count: c.messages,
                });
            }
            Ok(out)
        })
        .await
    }

    /// The messages of one conversation, oldest first, decrypted.
    pub async fn messages(
        &self,
        conversation: Conversation,
    ) -> Result<Vec<Message>, StarlingError> {
        let c = conversation.to_core()?;
        self.with_messaging(false, move |m| {
            Ok(m.messages(c)?.into_iter().map(Into::into).collect())
        })
        .await
    }

    /// The messages exchanged with the contact `authorId`, oldest first:
    /// the same as `messages(Conversation.Direct(authorId))`.
    pub async fn direct_messages(&self, author_id: String) -> Result<Vec<Message>, StarlingError> {
        self.messages(Conversation::Direct { author_id }).await
    }

    // ----- verification -------------------------------------------------

    /// The 60-digit safety number you and `authorId` compare (in person,
    /// on a call) to rule out an attacker in the middle.
    /// Throws `NoPrekeyBundle` while their identity key is unknown here.
    pub async fn safety_number(&self, author_id: String) -> Result<String, StarlingError> {
        let peer = author(&author_id)?;
        self.with_messaging(false, move |m| Ok(m.safety_number(&peer)?))
            .await
    }

    /// The string to show as a QR code for `authorId` to scan (the safety
    /// number in machine-readable form).
    pub async fn safety_qr(&self, author_id: String) -> Result<String, StarlingError> {
        let peer = author(&author_id)?;
        self.with_messaging(false, move |m| Ok(m.safety_qr(&peer)?))
            .await
    }

    /// How far you trust `authorId`'s identity key; `null`/`nil` if it was
    /// never seen.
    pub async fn trust(&self, author_id: String) -> Result<Option<TrustState>, StarlingError> {
        let peer = author(&author_id)?;
        self.with_messaging(false, move |m| Ok(m.trust(&peer)?.map(Into::into)))
            .await
    }

    /// Marks `authorId` verified after the user compared safety numbers
    /// (for a changed key: pins the new one).
    pub async fn mark_verified(&self, author_id: String) -> Result<(), StarlingError> {
        let peer = author(&author_id)?;
        self.with_messaging(false, move |m| Ok(m.mark_verified(&peer)?))
            .await
    }

    /// Accepts `authorId`'s changed identity key without verifying it, so
    /// sending works again (trust becomes `Unverified`).
    pub async fn accept_identity_change(&self, author_id: String) -> Result<(), StarlingError> {
        let peer = author(&author_id)?;
        self.with_messaging(false, move |m| Ok(m.accept_identity_change(&peer)?))
            .await
    }

    // ----- groups -------------------------------------------------------

    /// Creates a group (name at most 64 bytes) with you as its only member
    /// and admin; returns its id (64 hex digits).
    pub async fn create_group(&self, name: String) -> Result<String, StarlingError> {
        self.with_messaging(false, move |m| Ok(group_hex(&m.create_group(&name)?)))
            .await
    }

    /// Your groups, most recently changed first (ids).
    pub async fn groups(&self) -> Result<Vec<String>, StarlingError> {
        self.with_messaging(false, |m| Ok(m.groups()?.iter().map(group_hex).collect()))
            .await
    }

    /// What you know of a group: name, members, admins.
    /// Throws `NotFound` for an unknown group, `InvalidId`.
    pub async fn group_info(&self, group_id: String) -> Result<GroupInfo, StarlingError> {
        let g = group(&group_id)?;
        self.with_messaging(false, move |m| Ok(m.group_info(&g)?.into()))
            .await
    }

    /// Adds `authorId` to the group (you must be an admin). The new member
    /// needs to be reachable end to end (their prekey bundle stored or a
    /// conversation with them).
    ///
    /// Throws `Forbidden` (not an admin, group full…), `NoPrekeyBundle`,
    /// `NotFound`, `InvalidId`.
    pub async fn add_group_member(
        &self,
        group_id: String,
        author_id: String,
    ) -> Result<(), StarlingError> {
        let (g, who) = (group(&group_id)?, author(&author_id)?);
        self.with_messaging(true, move |m| {
            m.add_member(&g, &who)?;
            Ok(())
        })
        .await
    }

    /// Removes `authorId` from the group (you must be an admin, or it is
    /// you: leaving). The group is re-keyed so they cannot read later
    /// messages.
    pub async fn remove_group_member(
        &self,
        group_id: String,
        author_id: String,
    ) -> Result<(), StarlingError> {
        let (g, who) = (group(&group_id)?, author(&author_id)?);
        self.with_messaging(true, move |m| {
            m.remove_member(&g, &who)?;
            Ok(())
        })
        .await
    }

    /// Sends `text` (at most 8192 bytes) to every member of the group, end
    /// to end encrypted; delivered while networking runs.
    /// Throws `Forbidden` if you are not a member, `NotFound`, `InvalidId`.
    pub async fn send_group_message(
        &self,
        group_id: String,
        text: String,
    ) -> Result<(), StarlingError> {
        let g = group(&group_id)?;
        self.with_messaging(true, move |m| {
            m.encrypt_group(&g, &text)?;
            Ok(())
        })
        .await
    }
}
