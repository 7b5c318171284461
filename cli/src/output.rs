//! Rendering of command results: one JSON document (`--json`) or friendly
//! text. Ids are always their printable strings (`stl1…`, `stle1…`).

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Value, json};
use starling_core::node::{Notification, NotificationKind, PostView, ProfileView};
use starling_core::{AuthorId, EntryId};

/// What a command produced, in both renderings.
#[derive(Debug)]
pub struct Report {
    /// The `--json` document.
    pub json: Value,
    /// The friendly text (printed as is; ends with a newline if non-empty).
    pub text: String,
}

impl Report {
    /// A report from its two renderings.
    pub fn new(json: Value, text: impl Into<String>) -> Self {
        Self {
            json,
            text: text.into(),
        }
    }

    /// Writes the chosen rendering to stdout. A failed write (a closed pipe,
    /// a full disk) is reported on stderr and ends the process with status 1
    /// instead of a panic.
    pub fn print(&self, as_json: bool) {
        if as_json {
            print_json(&self.json);
        } else {
            write_stdout(self.text.as_bytes());
        }
    }
}

/// Writes one JSON document and a newline to stdout (see [`Report::print`]).
pub fn print_json(doc: &Value) {
    write_stdout(format!("{doc}\n").as_bytes());
}

fn write_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `2025-11-25 12:34:56 UTC` from milliseconds since the Unix epoch.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Printable ids as a JSON array.
pub fn ids_json<T: ToString>(ids: &[T]) -> Value {
    Value::Array(ids.iter().map(|i| Value::String(i.to_string())).collect())
}

fn opt_id(id: &Option<EntryId>) -> Value {
    id.map_or(Value::Null, |i| Value::String(i.to_string()))
}

/// A post as JSON.
pub fn post_json(p: &PostView) -> Value {
    json!({
        "id": p.id.to_string(),
        "author": p.author.to_string(),
        "author_name": p.author_name,
        "seq": p.seq,
        "timestamp_ms": p.timestamp_ms,
        "text": p.text,
        "reply_to": opt_id(&p.reply_to),
        "root": opt_id(&p.root),
        "mentions": ids_json(&p.mentions),
        "attachments": p.attachments.iter().map(|a| json!({
            "id": a.id.to_string(), "size": a.size, "mime": a.mime,
        })).collect::<Vec<_>>(),
        "deleted": p.deleted,
        "reactions": p.reactions.iter().map(|(emoji, count)| json!({
            "emoji": emoji, "count": count,
        })).collect::<Vec<_>>(),
    })
}

/// `Name (stl1…)` or just the id.
pub fn who(author: &AuthorId, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{n} ({author})"),
        _ => author.to_string(),
    }
}

/// A post as a few lines of text.
pub fn post_text(p: &PostView, out: &mut String) {
    let _ = writeln!(
        out,
        "{} · {}",
        who(&p.author, p.author_name.as_deref()),
        format_time(p.timestamp_ms)
    );
    if let Some(parent) = &p.reply_to {
        let _ = writeln!(out, "  ↳ reply to {parent}");
    }
    match (&p.text, p.deleted) {
        (_, true) | (None, _) => out.push_str("  [deleted]\n"),
        (Some(text), false) => {
            for line in text.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    if !p.reactions.is_empty() {
        let r: Vec<String> = p
            .reactions
            .iter()
            .map(|(emoji, n)| format!("{emoji} {n}"))
            .collect();
        let _ = writeln!(out, "  {}", r.join("  "));
    }
    let _ = writeln!(out, "  id: {}", p.id);
}

/// A page of posts, with the cursor for the next one.
pub fn posts_report(items: &[PostView], next: Option<String>, empty: &str) -> Report {
    let json = json!({
        "items": items.iter().map(post_json).collect::<Vec<_>>(),
        "next": next,
    });
    let mut text = String::new();
    if items.is_empty() {
        let _ = writeln!(text, "{empty}");
    }
    for (i, p) in items.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        post_text(p, &mut text);
    }
    if let Some(cursor) = &next {
        let _ = writeln!(text, "\nmore: --before {cursor}");
    }
    Report::new(json, text)
}

/// A notification as JSON.
pub fn notification_json(n: &Notification) -> Value {
    let (kind, emoji) = match &n.kind {
        NotificationKind::Reply => ("reply", None),
        NotificationKind::Mention => ("mention", None),
        NotificationKind::Reaction { emoji } => ("reaction", Some(emoji.clone())),
    };
    json!({
        "kind": kind,
        "emoji": emoji,
        "entry": n.entry.to_string(),
        "from": n.from.to_string(),
        "subject": n.subject.to_string(),
        "timestamp_ms": n.timestamp_ms,
    })
}

/// A notification as one line of text.
pub fn notification_text(n: &Notification, out: &mut String) {
    let what = match &n.kind {
        NotificationKind::Reply => "replied to".to_string(),
        NotificationKind::Mention => "mentioned you in".to_string(),
        NotificationKind::Reaction { emoji } => format!("reacted {emoji} to"),
    };
    let _ = writeln!(
        out,
        "{} · {} {what} {}\n  id: {}",
        format_time(n.timestamp_ms),
        n.from,
        n.subject,
        n.entry
    );
}

/// A profile as JSON.
pub fn profile_json(p: &ProfileView) -> Value {
    json!({
        "author": p.author.to_string(),
        "name": p.name,
        "about": p.about,
        "avatar": p.avatar.as_ref().map(|a| json!({
            "id": a.id.to_string(), "size": a.size, "mime": a.mime,
        })),
        "following": p.following,
        "followers": p.followers,
        "forked": p.forked,
    })
}

/// A profile as text.
pub fn profile_text(p: &ProfileView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        p.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("(no name)")
    );
    let _ = writeln!(out, "  id:        {}", p.author);
    if let Some(about) = p.about.as_deref().filter(|a| !a.is_empty()) {
        let _ = writeln!(out, "  about:     {about}");
    }
    let _ = writeln!(out, "  following: {}", p.following);
    let _ = writeln!(out, "  followers: {}", p.followers);
    if p.forked {
        let _ = writeln!(
            out,
            "  WARNING: this feed is forked (two different entries with the same number)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(1_764_073_845_123), "2025-11-25 12:30:45 UTC");
    }
}
