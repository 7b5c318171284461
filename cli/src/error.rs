//! The CLI's error type: what went wrong, what to do about it, and which exit
//! status it maps to. Every core error is translated here so that the user
//! always gets a message plus a hint, never a bare debug dump.

use std::fmt;
use std::process::ExitCode;

use starling_core::Error as CoreError;

/// Exit status classes (see `EXIT_CODES_HELP` in `args.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything else: no identity yet, storage, file system, ... (1).
    Other,
    /// Command-line usage error (2); clap reports most of these itself.
    Usage,
    /// Bad input data: malformed or unknown id, corrupt file, ... (65, EX_DATAERR).
    BadInput,
    /// The at-rest key is unavailable or wrong (77, EX_NOPERM).
    Locked,
}

impl Kind {
    /// The process exit status for this class.
    pub fn code(self) -> u8 {
        match self {
            Kind::Other => 1,
            Kind::Usage => 2,
            Kind::BadInput => 65,
            Kind::Locked => 77,
        }
    }

    /// Stable machine-readable name (used in `--json` error documents).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Other => "other",
            Kind::Usage => "usage",
            Kind::BadInput => "bad_input",
            Kind::Locked => "locked",
        }
    }
}

/// An error ready to be shown to the user.
#[derive(Debug)]
pub struct CliError {
    /// Exit status class.
    pub kind: Kind,
    /// What was wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// Result with [`CliError`].
pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    /// An error of the given class.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Bad input (exit 65).
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Kind::BadInput, message)
    }

    /// Locked (exit 77).
    pub fn locked(message: impl Into<String>) -> Self {
        Self::new(Kind::Locked, message)
    }

    /// Any other failure (exit 1).
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(Kind::Other, message)
    }

    /// Adds (or replaces) the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.code())
    }

    /// The `--json` form of this error.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "kind": self.kind.name(),
                "exit_code": self.kind.code(),
                "message": self.message,
                "hint": self.hint,
            }
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

const ID_HINT: &str = "author ids look like stl1…, entry ids like stle1…; copy them from \
                       the output of `starling timeline` or `--json`";

impl From<CoreError> for CliError {
    fn from(err: CoreError) -> Self {
        match err {
            CoreError::NoIdentity => CliError::other("this data dir has no identity yet").hint(
                "run `starling init` to create one (or `starling init --restore` to restore \
                 from your recovery phrase)",
            ),
            CoreError::IdentityExists => CliError::other("this data dir already has an identity")
                .hint("`starling whoami` shows it; use another --data-dir for a second identity"),
            CoreError::InvalidId {
                kind,
                input,
                reason,
            } => {
                CliError::bad_input(format!("invalid {kind} id {input:?}: {reason}")).hint(ID_HINT)
            }
            CoreError::NotFound(what) => CliError::bad_input(format!("not found: {what}"))
                .hint("the store only knows your feed and feeds you imported"),
            CoreError::InvalidInput(what) => CliError::bad_input(format!("invalid input: {what}")),
            CoreError::Crypto(what) => CliError::bad_input(format!("refused: {what}"))
                .hint("if this is a recovery phrase, check the 24 words and their order"),
            e @ (CoreError::Decode(_)
            | CoreError::Validation(_)
            | CoreError::BatchRejected { .. }) => CliError::bad_input(e.to_string())
                .hint("the data is corrupt or not a Starling feed export; nothing was written"),
            CoreError::Locked(what) => CliError::locked(format!("cannot unlock: {what}")).hint(
                "wrong passphrase? Set STARLING_PASSPHRASE or type it at the prompt \
                 (or pass the --insecure-key-file used at init)",
            ),
            e @ CoreError::SchemaTooNew { .. } => {
                CliError::other(e.to_string()).hint("upgrade starling to open this data dir")
            }
            e @ CoreError::Storage(_) => CliError::other(e.to_string())
                .hint("is another program holding the store, or the disk full?"),
            e @ CoreError::Io(_) => CliError::other(e.to_string()),
            e => CliError::other(e.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(err: std::io::Error) -> Self {
        CliError::other(format!("i/o: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_documented_codes() {
        assert_eq!(CliError::from(CoreError::NoIdentity).kind.code(), 1);
        let bad = CoreError::InvalidId {
            kind: "author",
            input: "stl1nope".into(),
            reason: "bad checksum".into(),
        };
        let e = CliError::from(bad);
        assert_eq!(e.kind.code(), 65);
        assert!(e.message.contains("stl1nope") && e.message.contains("bad checksum"));
        assert_eq!(
            CliError::from(CoreError::Locked("x".into())).kind.code(),
            77
        );
        assert!(
            CliError::from(CoreError::NoIdentity)
                .to_string()
                .contains("starling init")
        );
    }
}
