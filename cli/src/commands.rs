//! One function per subcommand: parse the user's arguments (ids, cursors)
//! first, then call the [`Node`] once, then build a [`Report`]. Nothing is
//! written before every argument has been validated.

use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use starling_core::identity::RecoveryPhrase;
use starling_core::node::{Cursor, PageRequest};
use starling_core::{AuthorId, EntryId, Node};
use zeroize::Zeroizing;

use crate::args::{Command, Paging};
use crate::error::{CliError, CliResult};
use crate::keys::{CliKeys, Mode};
use crate::output::{self, Report};

/// Longest recovery phrase input we accept on stdin (24 words fit in ~220 bytes).
const MAX_PHRASE_INPUT: u64 = 4096;

/// An open node plus the key provider it was opened with.
struct Ctx {
    node: Node,
    keys: Arc<CliKeys>,
}

impl Ctx {
    /// Converts a core result, replacing the core's generic `Locked` with the
    /// provider's more precise error, and reporting a missing identity as such.
    fn core<T>(&self, result: starling_core::Result<T>) -> CliResult<T> {
        result.map_err(|err| self.error(err))
    }

    /// See [`Self::core`].
    fn error(&self, err: starling_core::Error) -> CliError {
        match err {
            starling_core::Error::Locked(_) => {
                if matches!(self.node.has_identity(), Ok(false)) {
                    return CliError::from(starling_core::Error::NoIdentity);
                }
                match self.keys.take_error() {
                    Some(precise) => precise,
                    None => CliError::from(err),
                }
            }
            other => CliError::from(other),
        }
    }

    fn me(&self) -> CliResult<AuthorId> {
        self.core(self.node.whoami())
    }

    fn author_or_me(&self, id: Option<&str>) -> CliResult<AuthorId> {
        match id {
            Some(id) => parse_author(id),
            None => self.me(),
        }
    }
}

fn parse_author(id: &str) -> CliResult<AuthorId> {
    id.parse::<AuthorId>().map_err(CliError::from)
}

fn parse_entry(id: &str) -> CliResult<EntryId> {
    id.parse::<EntryId>().map_err(CliError::from)
}

fn page(paging: &Paging) -> CliResult<PageRequest> {
    let before = match &paging.before {
        Some(c) => Some(c.parse::<Cursor>().map_err(CliError::from)?),
        None => None,
    };
    Ok(PageRequest {
        limit: paging.limit,
        before,
    })
}

/// Runs `command` against the store in `data_dir`.
pub fn run(
    data_dir: &Path,
    insecure_key_file: Option<std::path::PathBuf>,
    command: Command,
) -> CliResult<Report> {
    let mode = if matches!(command, Command::Init { .. }) {
        Mode::Create
    } else {
        Mode::Open
    };
    // Reject malformed ids and cursors before the store is even opened.
    validate(&command)?;
    let keys = Arc::new(CliKeys::new(data_dir, insecure_key_file, mode));
    let node = Node::open(data_dir, keys.clone()).map_err(|e| {
        keys.take_error().unwrap_or_else(|| {
            let e = CliError::from(e);
            let msg = format!(
                "cannot open the store in {}: {}",
                data_dir.display(),
                e.message
            );
            CliError { message: msg, ..e }
        })
    })?;
    let ctx = Ctx { node, keys };
    match command {
        Command::Init { name, restore } => init(&ctx, name, restore),
        Command::Whoami => whoami(&ctx),
        Command::Post { text, reply_to } => {
            let reply_to = reply_to.as_deref().map(parse_entry).transpose()?;
            let id = ctx.core(ctx.node.post(&text, reply_to))?;
            Ok(published("Posted", id))
        }
        Command::React { id, emoji } => {
            let target = parse_entry(&id)?;
            let id = ctx.core(ctx.node.react(target, &emoji))?;
            Ok(published(&format!("Reacted {emoji} to {target}:"), id))
        }
        Command::Follow { id } => {
            let a = parse_author(&id)?;
            let e = ctx.core(ctx.node.follow(a))?;
            Ok(published(&format!("Now following {a}:"), e))
        }
        Command::Unfollow { id } => {
            let a = parse_author(&id)?;
            let e = ctx.core(ctx.node.unfollow(a))?;
            Ok(published(&format!("No longer following {a}:"), e))
        }
        Command::Block { id } => {
            let a = parse_author(&id)?;
            let e = ctx.core(ctx.node.block(a))?;
            Ok(published(&format!("Blocked {a}:"), e))
        }
        Command::Unblock { id } => {
            let a = parse_author(&id)?;
            let e = ctx.core(ctx.node.unblock(a))?;
            Ok(published(&format!("Unblocked {a}:"), e))
        }
        Command::Profile { id, name, about } => profile(&ctx, id, name, about),
        Command::Timeline { paging } => {
            let req = page(&paging)?;
            let p = ctx.core(ctx.node.timeline(req))?;
            Ok(output::posts_report(
                &p.items,
                p.next.map(|c| c.to_string()),
                "Your timeline is empty: `starling post TEXT` or `starling follow ID`.",
            ))
        }
        Command::Feed { id, paging } => {
            let author = parse_author(&id)?;
            let req = page(&paging)?;
            let p = ctx.core(ctx.node.feed(author, req))?;
            Ok(output::posts_report(
                &p.items,
                p.next.map(|c| c.to_string()),
                "No posts from this author in the store.",
            ))
        }
        Command::Thread { id } => {
            let root = parse_entry(&id)?;
            let items = ctx.core(ctx.node.thread(root))?;
            Ok(output::posts_report(&items, None, "No such thread."))
        }
        Command::Search { query, paging } => {
            let req = page(&paging)?;
            let p = ctx.core(ctx.node.search(&query, req))?;
            Ok(output::posts_report(
                &p.items,
                p.next.map(|c| c.to_string()),
                "No matching posts.",
            ))
        }
        Command::Delete { id } => {
            let target = parse_entry(&id)?;
            let e = ctx.core(ctx.node.delete(target))?;
            Ok(published(&format!("Deleted {target}:"), e))
        }
        Command::Hide { id } => {
            let target = parse_entry(&id)?;
            ctx.core(ctx.node.hide(target))?;
            Ok(Report::new(
                json!({ "hidden": target.to_string() }),
                format!("Hidden {target} (on this device only)\n"),
            ))
        }
        Command::Notifications { paging } => notifications(&ctx, &paging),
        Command::Follows { id } => {
            let a = ctx.author_or_me(id.as_deref())?;
            let list = ctx.core(ctx.node.follows(a))?;
            Ok(authors_report(
                a,
                &list,
                "follows nobody (as far as this store knows)",
            ))
        }
        Command::Followers { id } => {
            let a = ctx.author_or_me(id.as_deref())?;
            let list = ctx.core(ctx.node.followers(a))?;
            Ok(authors_report(
                a,
                &list,
                "has no followers this store knows of",
            ))
        }
        Command::ExportFeed { id, file } => {
            let author = parse_author(&id)?;
            let n = ctx.core(ctx.node.export_feed(author, &file))?;
            Ok(Report::new(
                json!({ "author": author.to_string(), "file": file.display().to_string(), "entries": n }),
                format!("Exported {n} entries of {author} to {}\n", file.display()),
            ))
        }
        Command::Import { file } => {
            let r = ctx.core(ctx.node.import(&file))?;
            Ok(Report::new(
                json!({
                    "accepted": r.accepted,
                    "duplicates": r.duplicates,
                    "forks": r.forks,
                    "blocked": r.blocked,
                }),
                format!(
                    "Imported {}: {} new entries, {} already known, {} forks, {} from blocked authors\n",
                    file.display(),
                    r.accepted,
                    r.duplicates,
                    r.forks,
                    r.blocked
                ),
            ))
        }
        // Routed to net_commands by main before a store is opened.
        Command::Net(_) => Err(CliError::other(
            "network commands are handled by net_commands",
        )),
        // Routed to dm_commands by main before a store is opened.
        Command::Dm(_) => Err(CliError::other(
            "messaging commands are handled by dm_commands",
        )),
        Command::RecoveryPhrase => {
            let me = ctx.me()?;
            let phrase = ctx.core(ctx.node.recovery_phrase())?;
            let words = Zeroizing::new(phrase.expose().to_string());
            Ok(Report::new(
                json!({ "author": me.to_string(), "recovery_phrase": words.as_str() }),
                format!("Recovery phrase of {me}:\n\n{}\n", phrase_grid(&words)),
            ))
        }
    }
}

/// Parses every id and cursor of `command`, so bad input fails before
/// anything (even a new data dir) is created.
fn validate(command: &Command) -> CliResult<()> {
    match command {
        Command::Post {
            reply_to: Some(id), ..
        }
        | Command::React { id, .. }
        | Command::Thread { id }
        | Command::Delete { id }
        | Command::Hide { id } => parse_entry(id).map(drop),
        Command::Follow { id }
        | Command::Unfollow { id }
        | Command::Block { id }
        | Command::Unblock { id }
        | Command::ExportFeed { id, .. }
        | Command::Profile { id: Some(id), .. }
        | Command::Follows { id: Some(id) }
        | Command::Followers { id: Some(id) } => parse_author(id).map(drop),
        Command::Feed { id, paging } => {
            parse_author(id)?;
            page(paging).map(drop)
        }
        Command::Timeline { paging }
        | Command::Search { paging, .. }
        | Command::Notifications { paging } => page(paging).map(drop),
        _ => Ok(()),
    }
}

/// Report for a command that published one entry.
fn published(what: &str, id: EntryId) -> Report {
    Report::new(json!({ "id": id.to_string() }), format!("{what} {id}\n"))
}

fn authors_report(author: AuthorId, list: &[AuthorId], none: &str) -> Report {
    let mut text = String::new();
    if list.is_empty() {
        let _ = writeln!(text, "{author} {none}");
    }
    for a in list {
        let _ = writeln!(text, "{a}");
    }
    Report::new(
        json!({ "author": author.to_string(), "items": output::ids_json(list) }),
        text,
    )
}

/// The 24 words, numbered, six per line.
fn phrase_grid(phrase: &str) -> String {
    let words: Vec<&str> = phrase.split_whitespace().collect();
    let mut out = String::new();
    for (row, chunk) in words.chunks(6).enumerate() {
        let mut line = String::new();
        for (col, w) in chunk.iter().enumerate() {
            let _ = write!(line, "{:>4}. {w:<10}", row * 6 + col + 1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn init(ctx: &Ctx, name: Option<String>, restore: bool) -> CliResult<Report> {
    if ctx.core(ctx.node.has_identity())? {
        return Err(CliError::from(starling_core::Error::IdentityExists));
    }
    let phrase = if restore { Some(read_phrase()?) } else { None };
    // Ask for (and confirm) the passphrase before anything is written.
    ctx.keys.unlock()?;
    let persisted = ctx.keys.persist()?;
    let result = match &phrase {
        Some(p) => ctx.node.restore_identity(p.expose()).map(|id| (id, None)),
        None => ctx
            .node
            .create_identity(name.as_deref())
            .map(|(id, phrase)| (id, Some(phrase))),
    };
    let (id, new_phrase) = match result {
        Ok(v) => v,
        Err(e) => {
            if matches!(ctx.node.has_identity(), Ok(false)) {
                persisted.undo();
            }
            return Err(ctx.error(e));
        }
    };
    let data_dir = ctx.node.data_dir().display().to_string();
    match new_phrase {
        None => Ok(Report::new(
            json!({ "author": id.to_string(), "restored": true, "data_dir": data_dir }),
            format!("Restored identity {id}\nData dir: {data_dir}\n"),
        )),
        Some(phrase) => {
            let words = Zeroizing::new(phrase.expose().to_string());
            let mut text = format!("Created identity {id}\n");
            if let Some(n) = &name {
                let _ = writeln!(text, "Name: {n}");
            }
            let _ = write!(
                text,
                "Data dir: {data_dir}\n\n\
                 Your recovery phrase. WRITE IT DOWN NOW and keep it offline and private:\n\
                 it is the only way to restore this identity if you lose this device or\n\
                 forget the passphrase. It is shown only once (`starling recovery-phrase`\n\
                 shows it again after unlocking).\n\n{}",
                phrase_grid(&words)
            );
            Ok(Report::new(
                json!({
                    "author": id.to_string(),
                    "restored": false,
                    "data_dir": data_dir,
                    "recovery_phrase": words.as_str(),
                }),
                text,
            ))
        }
    }
}

/// Reads the recovery phrase from stdin, prompting if it is a terminal.
fn read_phrase() -> CliResult<RecoveryPhrase> {
    let stdin = std::io::stdin();
    let mut raw = Zeroizing::new(String::new());
    if stdin.is_terminal() {
        eprint!("Enter your 24-word recovery phrase: ");
        stdin.read_line(&mut raw)?;
    } else {
        stdin
            .lock()
            .take(MAX_PHRASE_INPUT)
            .read_to_string(&mut raw)
            .map_err(|e| CliError::bad_input(format!("cannot read the phrase from stdin: {e}")))?;
    }
    if raw.trim().is_empty() {
        return Err(CliError::bad_input("no recovery phrase given")
            .hint("pipe the 24 words into `starling init --restore`, or type them at the prompt"));
    }
    // Check the words and checksum before asking for a passphrase.
    RecoveryPhrase::parse(&raw).map_err(CliError::from)
}

fn whoami(ctx: &Ctx) -> CliResult<Report> {
    let me = ctx.me()?;
    let profile = ctx.core(ctx.node.profile(me))?;
    let data_dir = ctx.node.data_dir().display().to_string();
    Ok(Report::new(
        json!({ "author": me.to_string(), "name": profile.name, "data_dir": data_dir }),
        format!(
            "{}\nData dir: {data_dir}\n",
            output::who(&me, profile.name.as_deref())
        ),
    ))
}

fn profile(
    ctx: &Ctx,
    id: Option<String>,
    name: Option<String>,
    about: Option<String>,
) -> CliResult<Report> {
    if name.is_some() || about.is_some() {
        let e = ctx.core(ctx.node.set_profile(name, about))?;
        return Ok(published("Profile updated:", e));
    }
    let author = ctx.author_or_me(id.as_deref())?;
    let p = ctx.core(ctx.node.profile(author))?;
    Ok(Report::new(
        output::profile_json(&p),
        output::profile_text(&p),
    ))
}

fn notifications(ctx: &Ctx, paging: &Paging) -> CliResult<Report> {
    let req = page(paging)?;
    let p = ctx.core(ctx.node.notifications(req))?;
    let next = p.next.map(|c| c.to_string());
    let mut text = String::new();
    if p.items.is_empty() {
        text.push_str("No notifications.\n");
    }
    for n in &p.items {
        output::notification_text(n, &mut text);
    }
    if let Some(c) = &next {
        let _ = writeln!(text, "\nmore: --before {c}");
    }
    Ok(Report::new(
        json!({
            "items": p.items.iter().map(output::notification_json).collect::<Vec<_>>(),
            "next": next,
        }),
        text,
    ))
}
