//! Command-line grammar of `starling` (clap derive). Arguments that name ids
//! or cursors stay strings here: they are parsed by the core so that a bad one
//! is reported as bad input (exit 65) with the core's reason, not as a usage
//! error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit statuses, shown at the end of `starling --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0   success
  1   other failure (no identity yet, storage or file-system error, ...)
  2   usage error (unknown command or flag, missing argument)
  65  bad input (malformed or unknown id, corrupt import file, bad recovery
      phrase, text too long, ...); nothing was written
  77  locked: the at-rest key is unavailable (wrong passphrase, no passphrase
      and no terminal to ask on, missing key file)

Environment:
  STARLING_DATA_DIR           data dir (overridden by --data-dir)
  STARLING_PASSPHRASE         passphrase that unlocks the identity (else a prompt)
  STARLING_INSECURE_KEY_FILE  same as --insecure-key-file";

/// `starling`: a Starling node on this machine, driven from the shell.
#[derive(Debug, Parser)]
#[command(
    name = "starling",
    version,
    about = "A Starling peer-to-peer social node: identity, signed feed and local store",
    long_about = "A Starling peer-to-peer social node: your identity, your signed \
                  append-only feed and the feeds you follow, kept in a local SQLite store.\n\n\
                  Start with `starling init`. Ids are printed as stl1… (authors) and \
                  stle1… (entries); `--json` gives machine-readable output.",
    after_help = EXIT_CODES_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Directory holding the store (starling.db) and keyfile.json.
    /// Defaults to the platform data dir (e.g. ~/.local/share/starling).
    #[arg(long, global = true, value_name = "DIR", env = "STARLING_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print exactly one JSON document on stdout instead of friendly text.
    #[arg(long, global = true)]
    pub json: bool,

    /// INSECURE: take the at-rest key from a plain file of 32 hex-encoded
    /// bytes (created by `init` if missing) instead of a passphrase.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "STARLING_INSECURE_KEY_FILE"
    )]
    pub insecure_key_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Paging flags shared by the list commands.
#[derive(Debug, Clone, Args)]
pub struct Paging {
    /// How many items to show (1..=200).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,

    /// Continue after this cursor (printed as `next` by the previous page).
    #[arg(long, value_name = "CURSOR")]
    pub before: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new identity (prints its id and recovery phrase once), or
    /// restore one with --restore.
    Init {
        /// Display name to publish in the new identity's profile.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Restore from a 24-word recovery phrase read from stdin (or asked for).
        #[arg(long, conflicts_with = "name")]
        restore: bool,
    },
    /// Show this node's identity.
    Whoami,
    /// Publish a post.
    Post {
        /// The text of the post (mention people with @stl1…).
        text: String,
        /// Entry id (stle1…) of the post this one replies to.
        #[arg(long, value_name = "ID")]
        reply_to: Option<String>,
    },
    /// React to an entry with an emoji.
    React {
        /// Entry id (stle1…).
        id: String,
        /// The reaction, e.g. 👍.
        emoji: String,
    },
    /// Follow an author.
    Follow {
        /// Author id (stl1…).
        id: String,
    },
    /// Stop following an author.
    Unfollow {
        /// Author id (stl1…).
        id: String,
    },
    /// Block an author (their posts are no longer shown).
    Block {
        /// Author id (stl1…).
        id: String,
    },
    /// Unblock an author.
    Unblock {
        /// Author id (stl1…).
        id: String,
    },
    /// Show a profile (yours by default), or set yours with --name/--about.
    Profile {
        /// Author id (stl1…) to show; defaults to you.
        id: Option<String>,
        /// Set your display name.
        #[arg(long, value_name = "N", conflicts_with = "id")]
        name: Option<String>,
        /// Set your "about" text.
        #[arg(long, value_name = "A", conflicts_with = "id")]
        about: Option<String>,
    },
    /// Posts from you and the people you follow, newest first.
    Timeline {
        #[command(flatten)]
        paging: Paging,
    },
    /// One author's posts, newest first.
    Feed {
        /// Author id (stl1…).
        id: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// A post and its replies, oldest reply first.
    Thread {
        /// Entry id (stle1…) of the thread's first post.
        id: String,
    },
    /// Full-text search over the posts in the store.
    Search {
        /// Words to look for.
        query: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete one of your own entries (its text is removed from this store).
    Delete {
        /// Entry id (stle1…).
        id: String,
    },
    /// Hide an entry from your views (local only, nothing is published).
    Hide {
        /// Entry id (stle1…).
        id: String,
    },
    /// Replies, mentions and reactions addressed to you, newest first.
    Notifications {
        #[command(flatten)]
        paging: Paging,
    },
    /// Authors followed by ID (you by default).
    Follows {
        /// Author id (stl1…).
        id: Option<String>,
    },
    /// Authors following ID (you by default), as far as this store knows.
    Followers {
        /// Author id (stl1…).
        id: Option<String>,
    },
    /// Write an author's feed (entries and payloads) to FILE.
    ExportFeed {
        /// Author id (stl1…).
        id: String,
        /// File to write.
        file: PathBuf,
    },
    /// Import a file written by `export-feed` (all or nothing).
    Import {
        /// File to read.
        file: PathBuf,
    },
    /// Show your recovery phrase again (needs the passphrase).
    RecoveryPhrase,
    /// Network commands: serve, invite, peers, dial, sync, blob.
    #[command(flatten)]
    Net(crate::net_commands::NetCommand),
    /// Encrypted messaging: dm, group, safety-number.
    #[command(flatten)]
    Dm(crate::dm_commands::DmCommand),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }
}
