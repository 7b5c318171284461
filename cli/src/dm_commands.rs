//! The end-to-end encrypted messaging commands: `dm send/list/show`,
//! `group create/add/remove/send/show` and `safety-number`.
//!
//! Sending works offline: the message is encrypted at once and its
//! envelopes wait in the data dir's outbox; a `starling serve` running on the
//! same data dir (now or later) hands them to the carrier and delivers them.
//! `dm list/show` read what that serve process received. Every command needs
//! the at-rest key (message texts and session secrets are sealed under it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use serde_json::{Value, json};
use starling_core::messaging::{
    Conversation, GroupId, Messaging, MessagingError, StoredMessage, TrustState,
};
use starling_core::{AuthorId, Node};

use crate::error::{CliError, CliResult};
use crate::keys::{CliKeys, Mode};
use crate::output::Report;

/// The messaging subcommands (flattened into the main command list).
#[derive(Debug, Subcommand)]
pub enum DmCommand {
    /// End-to-end encrypted direct messages.
    #[command(subcommand)]
    Dm(DmSub),
    /// End-to-end encrypted groups.
    #[command(subcommand)]
    Group(GroupSub),
    /// Show the safety number with a contact (compare it in person), or
    /// mark their key verified / accept a changed key.
    SafetyNumber {
        /// Author id (stl1…).
        id: String,
        /// You compared the numbers and they match: mark the key verified
        /// (also re-enables sending after a key change).
        #[arg(long, conflicts_with = "accept")]
        verify: bool,
        /// Accept a changed key without verifying (sending works again).
        #[arg(long)]
        accept: bool,
    },
}

/// `starling dm …`
#[derive(Debug, Subcommand)]
pub enum DmSub {
    /// Encrypt a message to ID and queue it for delivery (works offline;
    /// a running `starling serve` delivers it).
    Send {
        /// Author id (stl1…) of the recipient.
        id: String,
        /// The text (at most 8192 bytes).
        text: String,
    },
    /// Conversations, most recent first.
    List,
    /// The messages of the conversation with ID, oldest first.
    Show {
        /// Author id (stl1…).
        id: String,
    },
}

/// `starling group …`
#[derive(Debug, Subcommand)]
pub enum GroupSub {
    /// Create a group with you as its only member and admin.
    Create {
        /// The group's name.
        name: String,
    },
    /// Add a member (you must be an admin).
    Add {
        /// Group id (64 hex digits, from `group create` or `dm list`).
        group: String,
        /// Author id (stl1…).
        id: String,
    },
    /// Remove a member (or yourself: leave). Re-keys the group.
    Remove {
        /// Group id.
        group: String,
        /// Author id (stl1…).
        id: String,
    },
    /// Send a message to the group (works offline, like `dm send`).
    Send {
        /// Group id.
        group: String,
        /// The text (at most 8192 bytes).
        text: String,
    },
    /// The group's members and messages.
    Show {
        /// Group id.
        group: String,
    },
}

fn parse_author(id: &str) -> CliResult<AuthorId> {
    id.parse::<AuthorId>().map_err(CliError::from)
}

fn parse_group(s: &str) -> CliResult<GroupId> {
    let bytes = hex::decode(s.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    bytes.map(GroupId).ok_or_else(|| {
        CliError::bad_input(format!("invalid group id {s:?}"))
            .hint("a group id is 64 hex digits, as printed by `starling group create`")
    })
}

fn group_hex(g: &GroupId) -> String {
    hex::encode(g.0)
}

fn trust_name(t: Option<TrustState>) -> &'static str {
    match t {
        Some(TrustState::Verified) => "verified",
        Some(TrustState::Changed) => "changed",
        Some(TrustState::Unverified) => "unverified",
        None => "unknown",
    }
}

/// A messaging refusal as a CLI error with a hint.
fn refused(e: MessagingError) -> CliError {
    match e {
        MessagingError::Untrusted(peer) => CliError::bad_input(format!(
            "not sent: the identity key of {peer} changed since you last talked"
        ))
        .hint(format!(
            "compare safety numbers (`starling safety-number {peer}`), then run \
             `starling safety-number {peer} --verify` (or --accept) and send again"
        )),
        MessagingError::NoBundle(peer) => CliError::bad_input(format!(
            "no session with {peer} and no prekey bundle of theirs in this store"
        ))
        .hint("follow them and let `starling serve` sync until their feed arrives"),
        MessagingError::UnknownGroup => {
            CliError::bad_input("unknown group").hint("`starling dm list` shows your groups")
        }
        MessagingError::Forbidden(why) => CliError::bad_input(format!("refused: {why}")),
        MessagingError::InvalidInput(why) => CliError::bad_input(format!("invalid input: {why}")),
        MessagingError::Core(e) => CliError::from(e),
        other => CliError::other(other.to_string()),
    }
}

/// Runs a messaging command for the data dir.
pub fn run(
    data_dir: &Path,
    insecure_key_file: Option<PathBuf>,
    command: DmCommand,
) -> CliResult<Report> {
    // Validate ids before opening anything.
    match &command {
        DmCommand::Dm(DmSub::Send { id, .. } | DmSub::Show { id })
        | DmCommand::SafetyNumber { id, .. } => {
            parse_author(id)?;
        }
        DmCommand::Group(GroupSub::Add { group, id } | GroupSub::Remove { group, id }) => {
            parse_group(group)?;
            parse_author(id)?;
        }
        DmCommand::Group(GroupSub::Send { group, .. } | GroupSub::Show { group }) => {
            parse_group(group)?;
        }
        _ => {}
    }
    let keys = Arc::new(CliKeys::new(data_dir, insecure_key_file, Mode::Open));
    let node = Node::open(data_dir, keys.clone())
        .map_err(|e| keys.take_error().unwrap_or_else(|| CliError::from(e)))?;
    if !node.has_identity().map_err(CliError::from)? {
        return Err(CliError::from(starling_core::Error::NoIdentity));
    }
    let result = node.with_messaging(|m| dispatch(m, &node, command));
    match result {
        Ok(r) => r,
        Err(e) => Err(keys.take_error().unwrap_or_else(|| CliError::from(e))),
    }
}

fn queued(node: &Node) -> u64 {
    node.store()
        .read(|c| Ok(c.query_row("SELECT count(*) FROM msg_outbox", [], |r| r.get(0))?))
        .map(|n: i64| n as u64)
        .unwrap_or(0)
}

fn message_json(m: &StoredMessage) -> Value {
    json!({
        "id": m.id,
        "sender": m.sender.to_string(),
        "outgoing": m.outgoing,
        "at_ms": m.at_ms,
        "text": m.text,
    })
}

fn messages_text(msgs: &[StoredMessage]) -> String {
    let mut out = String::new();
    for m in msgs {
        let who = if m.outgoing {
            "you".to_string()
        } else {
            m.sender.to_string()
        };
        out.push_str(&format!("[{}] {who}: {}\n", m.at_ms, m.text));
    }
    if msgs.is_empty() {
        out.push_str("No messages.\n");
    }
    out
}

fn dispatch(m: &Messaging<'_>, node: &Node, command: DmCommand) -> CliResult<Report> {
    match command {
        DmCommand::Dm(DmSub::Send { id, text }) => {
            let to = parse_author(&id)?;
            let env = m.encrypt_dm(&to, None, &text).map_err(refused)?;
            let waiting = queued(node);
            Ok(Report::new(
                json!({ "sent": true, "to": to.to_string(), "envelope_bytes": env.len(), "queued": waiting }),
                format!(
                    "Encrypted and queued for {to} ({} bytes); a running `starling serve` delivers it.\n",
                    env.len()
                ),
            ))
        }
        DmCommand::Dm(DmSub::List) => {
            let convs = m.conversations().map_err(refused)?;
            let mut items = Vec::new();
            let mut text = String::new();
            for c in &convs {
                let (kind, id, name) = match c.conversation {
                    Conversation::Direct(a) => ("direct", a.to_string(), None),
                    Conversation::Group(g) => (
                        "group",
                        group_hex(&g),
                        m.group_info(&g).ok().map(|i| i.name),
                    ),
                };
                text.push_str(&format!(
                    "{kind:6} {id}{}  {} message(s), last at {}\n",
                    name.as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    c.messages,
                    c.last_at_ms
                ));
                items.push(json!({
                    "kind": kind, "id": id, "name": name,
                    "messages": c.messages, "last_at_ms": c.last_at_ms,
                }));
            }
            if convs.is_empty() {
                text.push_str("No conversations.\n");
            }
            Ok(Report::new(json!({ "conversations": items }), text))
        }
        DmCommand::Dm(DmSub::Show { id }) => {
            let peer = parse_author(&id)?;
            let msgs = m.messages(Conversation::Direct(peer)).map_err(refused)?;
            let trust = m.trust(&peer).map_err(refused)?;
            Ok(Report::new(
                json!({
                    "peer": peer.to_string(),
                    "trust": trust_name(trust),
                    "messages": msgs.iter().map(message_json).collect::<Vec<_>>(),
                }),
                messages_text(&msgs),
            ))
        }
        DmCommand::Group(GroupSub::Create { name }) => {
            let g = m.create_group(&name).map_err(refused)?;
            Ok(Report::new(
                json!({ "group": group_hex(&g), "name": name }),
                format!("Created group {name}: {}\n", group_hex(&g)),
            ))
        }
        DmCommand::Group(GroupSub::Add { group, id }) => {
            let (g, who) = (parse_group(&group)?, parse_author(&id)?);
            let out = m.add_member(&g, &who).map_err(refused)?;
            Ok(Report::new(
                json!({ "group": group_hex(&g), "added": who.to_string(), "envelopes": out.len() }),
                format!("Added {who}; {} envelope(s) queued.\n", out.len()),
            ))
        }
        DmCommand::Group(GroupSub::Remove { group, id }) => {
            let (g, who) = (parse_group(&group)?, parse_author(&id)?);
            let out = m.remove_member(&g, &who).map_err(refused)?;
            Ok(Report::new(
                json!({ "group": group_hex(&g), "removed": who.to_string(), "envelopes": out.len() }),
                format!("Removed {who}; the group was re-keyed.\n"),
            ))
        }
        DmCommand::Group(GroupSub::Send { group, text }) => {
            let g = parse_group(&group)?;
            let out = m.encrypt_group(&g, &text).map_err(refused)?;
            Ok(Report::new(
                json!({ "sent": true, "group": group_hex(&g), "envelopes": out.len(), "queued": queued(node) }),
                "Encrypted and queued for the group; a running `starling serve` delivers it.\n",
            ))
        }
        DmCommand::Group(GroupSub::Show { group }) => {
            let g = parse_group(&group)?;
            let info = m.group_info(&g).map_err(refused)?;
            let msgs = m.messages(Conversation::Group(g)).map_err(refused)?;
            let mut text = format!(
                "Group {} ({}), epoch {}{}\nMembers:\n",
                info.name,
                group_hex(&g),
                info.epoch,
                if info.is_member {
                    ""
                } else {
                    " — you are no longer a member"
                }
            );
            for a in &info.members {
                let admin = if info.admins.contains(a) {
                    " (admin)"
                } else {
                    ""
                };
                text.push_str(&format!("  {a}{admin}\n"));
            }
            text.push_str(&messages_text(&msgs));
            Ok(Report::new(
                json!({
                    "group": group_hex(&g),
                    "name": info.name,
                    "epoch": info.epoch,
                    "is_member": info.is_member,
                    "members": info.members.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "admins": info.admins.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "messages": msgs.iter().map(message_json).collect::<Vec<_>>(),
                }),
                text,
            ))
        }
        DmCommand::SafetyNumber { id, verify, accept } => {
            let peer = parse_author(&id)?;
            if verify {
                m.mark_verified(&peer).map_err(refused)?;
            } else if accept {
                m.accept_identity_change(&peer).map_err(refused)?;
            }
            let number = m.safety_number(&peer).map_err(|e| match e {
                MessagingError::NoBundle(p) => CliError::bad_input(format!(
                    "no identity key of {p} known yet"
                ))
                .hint(
                    "follow them and sync until their prekey bundle arrives, or exchange a message",
                ),
                other => refused(other),
            })?;
            let trust = m.trust(&peer).map_err(refused)?;
            let grouped: Vec<&str> = number
                .as_bytes()
                .chunks(5)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            Ok(Report::new(
                json!({
                    "peer": peer.to_string(),
                    "safety_number": number,
                    "trust": trust_name(trust),
                    "qr": m.safety_qr(&peer).map_err(refused)?,
                }),
                format!(
                    "Safety number with {peer} ({}):\n  {}\n",
                    trust_name(trust),
                    grouped.join(" ")
                ),
            ))
        }
    }
}
