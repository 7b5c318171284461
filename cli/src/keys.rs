//! The CLI's at-rest key: the 32-byte key that seals the identity's secrets in
//! the store, handed to the core through its `AtRestKeyProvider` trait.
//!
//! Two sources:
//! * **Passphrase** (default): from `STARLING_PASSPHRASE` or a terminal
//!   prompt (asked twice on `init`), stretched with Argon2id (v1.3,
//!   m = 19 MiB, t = 2, p = 1 — OWASP's minimum recommendation for Argon2id)
//!   and a random 16-byte salt. Salt and cost are kept in
//!   `<data_dir>/keyfile.json`: `{"kdf":"argon2id","m_cost":19456,"t_cost":2,
//!   "p_cost":1,"salt":"<hex>"}`. The file holds no secret.
//! * **Insecure key file** (`--insecure-key-file PATH` or
//!   `STARLING_INSECURE_KEY_FILE`): 32 random bytes in hex, created by `init`
//!   if missing. Anyone who can read it can unlock the identity, so a warning
//!   is printed to stderr every time it is used.
//!
//! The key is derived lazily (only commands that need the secrets ask for
//! the passphrase), cached for the life of the process and wiped on drop.
//! With no passphrase and no terminal, unlocking fails at once instead of
//! waiting for input that will never come.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use starling_core::identity::at_rest::{AtRestKey, AtRestKeyProvider};
use zeroize::Zeroizing;

use crate::error::{CliError, CliResult};

/// Name of the KDF parameter file inside the data dir.
pub const KEYFILE_NAME: &str = "keyfile.json";
/// Environment variable holding the passphrase.
pub const PASSPHRASE_ENV: &str = "STARLING_PASSPHRASE";

/// Argon2id memory cost in KiB (19 MiB).
pub const DEFAULT_M_COST: u32 = 19 * 1024;
/// Argon2id passes.
pub const DEFAULT_T_COST: u32 = 2;
/// Argon2id lanes.
pub const DEFAULT_P_COST: u32 = 1;
/// Salt length in bytes.
pub const SALT_LEN: usize = 16;

/// Upper bounds accepted from a keyfile, so a tampered file cannot make
/// `starling` allocate gigabytes or spin for minutes.
const MAX_M_COST: u32 = 1024 * 1024; // 1 GiB
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// Contents of `keyfile.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Always `"argon2id"`.
    pub kdf: String,
    /// Memory cost in KiB.
    pub m_cost: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism.
    pub p_cost: u32,
    /// Hex-encoded random salt.
    pub salt: String,
}

impl KeyFile {
    /// Fresh parameters with a random salt.
    fn generate() -> CliResult<Self> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt)
            .map_err(|e| CliError::other(format!("no secure randomness available: {e}")))?;
        Ok(Self {
            kdf: "argon2id".into(),
            m_cost: DEFAULT_M_COST,
            t_cost: DEFAULT_T_COST,
            p_cost: DEFAULT_P_COST,
            salt: hex::encode(salt),
        })
    }

    /// Reads and checks `keyfile.json`.
    fn load(path: &Path) -> CliResult<Self> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CliError::locked(format!(
                    "no {KEYFILE_NAME} in {}",
                    path.parent().unwrap_or(path).display()
                ))
                .hint(
                    "if this data dir was set up with --insecure-key-file, pass it again; \
                     otherwise restore keyfile.json from a backup, or restore the identity \
                     into a new data dir with `starling init --restore`",
                ));
            }
            Err(e) => {
                return Err(CliError::other(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let corrupt = |why: String| {
            CliError::other(format!("{} is corrupt: {why}", path.display())).hint(
                "restore the file from a backup; without it the passphrase cannot unlock \
                 this data dir (the recovery phrase still restores the identity elsewhere)",
            )
        };
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if file.kdf != "argon2id" {
            return Err(corrupt(format!("unsupported kdf {:?}", file.kdf)));
        }
        let salt = file.salt_bytes().map_err(corrupt)?;
        if !(8..=64).contains(&salt.len()) {
            return Err(corrupt(format!("salt of {} bytes", salt.len())));
        }
        if file.m_cost > MAX_M_COST || file.t_cost > MAX_T_COST || file.p_cost > MAX_P_COST {
            return Err(corrupt("cost parameters out of range".into()));
        }
        file.params().map_err(corrupt)?;
        Ok(file)
    }

    fn salt_bytes(&self) -> Result<Vec<u8>, String> {
        hex::decode(&self.salt).map_err(|e| format!("salt is not hex: {e}"))
    }

    fn params(&self) -> Result<Params, String> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| format!("bad argon2 parameters: {e}"))
    }

    /// Stretches `passphrase` into the 32-byte at-rest key.
    pub fn derive(&self, passphrase: &[u8]) -> CliResult<Zeroizing<[u8; 32]>> {
        let params = self.params().map_err(CliError::other)?;
        let salt = self.salt_bytes().map_err(CliError::other)?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, &salt, key.as_mut())
            .map_err(|e| CliError::other(format!("argon2id failed: {e}")))?;
        Ok(key)
    }
}

/// Whether we are creating a new identity (`init`) or opening an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `init`: new salt / new key file; passphrase asked twice.
    Create,
    /// Every other command.
    Open,
}

/// What the key comes from.
#[derive(Debug, Clone)]
enum Source {
    /// Passphrase + `keyfile.json` (for `Create`, freshly generated params).
    Passphrase,
    /// Plain key file.
    InsecureFile(PathBuf),
}

/// Provides the at-rest key to the core; see the module docs.
pub struct CliKeys {
    data_dir: PathBuf,
    mode: Mode,
    source: Source,
    /// The key once derived; wiped on drop.
    cached: Mutex<Option<Zeroizing<[u8; 32]>>>,
    /// Freshly generated KDF parameters waiting to be written by [`Self::persist`].
    new_keyfile: Mutex<Option<KeyFile>>,
    /// A freshly generated insecure key waiting to be written by [`Self::persist`].
    new_insecure_key: Mutex<Option<Zeroizing<[u8; 32]>>>,
    /// The last failure, with its hint, for the caller to report in place of
    /// the core's generic `Locked`.
    last_error: Mutex<Option<CliError>>,
}

/// What [`CliKeys::persist`] created, so a failed `init` can undo it.
#[derive(Debug, Default)]
pub struct Persisted {
    created: Vec<PathBuf>,
}

impl Persisted {
    /// Removes the files created by `persist` (after a failed `init`).
    pub fn undo(self) {
        for path in self.created {
            let _ = fs::remove_file(path);
        }
    }
}

impl CliKeys {
    /// A provider for `data_dir`; `insecure_key_file` selects the plain
    /// key-file source.
    pub fn new(data_dir: &Path, insecure_key_file: Option<PathBuf>, mode: Mode) -> Self {
        let source = match insecure_key_file {
            Some(path) => Source::InsecureFile(path),
            None => Source::Passphrase,
        };
        Self {
            data_dir: data_dir.to_path_buf(),
            mode,
            source,
            cached: Mutex::new(None),
            new_keyfile: Mutex::new(None),
            new_insecure_key: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    fn keyfile_path(&self) -> PathBuf {
        self.data_dir.join(KEYFILE_NAME)
    }

    /// The error behind the last failed unlock, if any.
    pub fn take_error(&self) -> Option<CliError> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Obtains the key (asking for the passphrase if needed) and caches it.
    pub fn unlock(&self) -> CliResult<Zeroizing<[u8; 32]>> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = cached.as_ref() {
            return Ok(key.clone());
        }
        let key = match &self.source {
            Source::InsecureFile(path) => self.insecure_key(path)?,
            Source::Passphrase => {
                let keyfile = match self.mode {
                    Mode::Open => KeyFile::load(&self.keyfile_path())?,
                    Mode::Create => self.pending_keyfile()?,
                };
                let passphrase = read_passphrase(&self.data_dir, self.mode)?;
                keyfile.derive(passphrase.as_bytes())?
            }
        };
        *cached = Some(key.clone());
        Ok(key)
    }

    /// For `init`: the parameters that [`Self::persist`] will write.
    fn pending_keyfile(&self) -> CliResult<KeyFile> {
        let mut pending = self
            .new_keyfile
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = pending.as_ref() {
            return Ok(k.clone());
        }
        let k = KeyFile::generate()?;
        *pending = Some(k.clone());
        Ok(k)
    }

    fn insecure_key(&self, path: &Path) -> CliResult<Zeroizing<[u8; 32]>> {
        warn_insecure(path);
        match fs::read_to_string(path) {
            Ok(text) => parse_hex_key(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.mode == Mode::Create => {
                let mut pending = self
                    .new_insecure_key
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(key) = pending.as_ref() {
                    return Ok(key.clone());
                }
                let mut key = Zeroizing::new([0u8; 32]);
                getrandom::fill(key.as_mut())
                    .map_err(|e| CliError::other(format!("no secure randomness available: {e}")))?;
                *pending = Some(key.clone());
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::locked(format!(
                "insecure key file {} does not exist",
                path.display()
            ))
            .hint("pass the key file used at `starling init`")),
            Err(e) => Err(CliError::locked(format!(
                "cannot read key file {}: {e}",
                path.display()
            ))),
        }
    }

    /// For `init`, after the key is unlocked and before the identity is
    /// created: writes `keyfile.json` (passphrase) or the new insecure key
    /// file. Files are written to a temporary name, synced and renamed, so a
    /// crash never leaves a half-written key file.
    pub fn persist(&self) -> CliResult<Persisted> {
        let mut persisted = Persisted::default();
        match &self.source {
            Source::Passphrase => {
                let keyfile = self.pending_keyfile()?;
                let mut text = serde_json::to_string_pretty(&keyfile)
                    .map_err(|e| CliError::other(format!("cannot encode keyfile: {e}")))?;
                text.push('\n');
                let path = self.keyfile_path();
                write_atomically(&path, text.as_bytes())?;
                persisted.created.push(path);
            }
            Source::InsecureFile(path) => {
                let pending = self
                    .new_insecure_key
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(key) = pending.as_ref() {
                    let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_ref())));
                    write_atomically(path, text.as_bytes())?;
                    persisted.created.push(path.clone());
                }
            }
        }
        Ok(persisted)
    }
}

impl AtRestKeyProvider for CliKeys {
    fn at_rest_key(&self) -> starling_core::Result<AtRestKey> {
        match self.unlock() {
            Ok(key) => Ok(AtRestKey::from_bytes(*key)),
            Err(err) => {
                let message = err.message.clone();
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(err);
                Err(starling_core::Error::Locked(message))
            }
        }
    }
}

fn parse_hex_key(path: &Path, text: &str) -> CliResult<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|e| {
        CliError::locked(format!(
            "insecure key file {} is not 64 hex digits: {e}",
            path.display()
        ))
    })?;
    Ok(key)
}

fn warn_insecure(path: &Path) {
    eprintln!(
        "warning: using the INSECURE plain key file {}: anyone who can read it can unlock \
         this identity. Prefer a passphrase (STARLING_PASSPHRASE or the prompt).",
        path.display()
    );
}

/// Whether we may prompt: someone is at a terminal and `/dev/tty` opens.
fn can_prompt() -> bool {
    let someone_there = std::io::stdin().is_terminal() || std::io::stderr().is_terminal();
    if !someone_there {
        return false;
    }
    #[cfg(unix)]
    {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .is_ok()
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Reads the passphrase from the environment or the terminal.
fn read_passphrase(data_dir: &Path, mode: Mode) -> CliResult<Zeroizing<String>> {
    if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
        let value =
            Zeroizing::new(value.into_string().map_err(|_| {
                CliError::bad_input(format!("{PASSPHRASE_ENV} is not valid UTF-8"))
            })?);
        if !value.is_empty() {
            return Ok(value);
        }
    }
    if !can_prompt() {
        return Err(CliError::locked(format!(
            "a passphrase is needed to unlock {} but {PASSPHRASE_ENV} is not set and there \
             is no terminal to ask on",
            data_dir.display()
        ))
        .hint(format!(
            "set {PASSPHRASE_ENV}, or run in a terminal (or use --insecure-key-file, insecure)"
        )));
    }
    let prompt_err = |e: std::io::Error| CliError::locked(format!("cannot read passphrase: {e}"));
    match mode {
        Mode::Open => {
            let p = Zeroizing::new(
                rpassword::prompt_password(format!("Passphrase for {}: ", data_dir.display()))
                    .map_err(prompt_err)?,
            );
            Ok(p)
        }
        Mode::Create => {
            let first = Zeroizing::new(
                rpassword::prompt_password("Choose a passphrase for the new identity: ")
                    .map_err(prompt_err)?,
            );
            if first.is_empty() {
                return Err(CliError::bad_input("the passphrase must not be empty"));
            }
            let second = Zeroizing::new(
                rpassword::prompt_password("Repeat the passphrase: ").map_err(prompt_err)?,
            );
            if *first != *second {
                return Err(CliError::bad_input("the two passphrases do not match")
                    .hint("run `starling init` again"));
            }
            Ok(first)
        }
    }
}

/// Writes `bytes` to `path` via a synced temporary file and a rename, with
/// owner-only permissions on Unix.
fn write_atomically(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)
        .map_err(|e| CliError::other(format!("cannot create {}: {e}", dir.display())))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let fail = |e: std::io::Error| CliError::other(format!("cannot write {}: {e}", path.display()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    fs::rename(&tmp, path).map_err(fail)?;
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fast_keyfile() -> KeyFile {
        KeyFile {
            kdf: "argon2id".into(),
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
            salt: "00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn derivation_is_deterministic_and_passphrase_dependent() {
        let k = fast_keyfile();
        let a = k.derive(b"correct horse").unwrap();
        let b = k.derive(b"correct horse").unwrap();
        let c = k.derive(b"wrong horse").unwrap();
        assert_eq!(*a, *b);
        assert_ne!(*a, *c);
    }

    #[test]
    fn keyfile_round_trips_and_rejects_junk() {
        let dir = std::env::temp_dir().join(format!("starling-keys-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(KEYFILE_NAME);
        let k = KeyFile::generate().unwrap();
        write_atomically(&path, serde_json::to_string(&k).unwrap().as_bytes()).unwrap();
        let back = KeyFile::load(&path).unwrap();
        assert_eq!(back.salt, k.salt);
        assert_eq!(back.m_cost, DEFAULT_M_COST);
        fs::write(&path, "{\"kdf\":\"argon2id\"}").unwrap();
        assert!(KeyFile::load(&path).is_err());
        fs::write(&path, r#"{"kdf":"argon2id","m_cost":4294967295,"t_cost":2,"p_cost":1,"salt":"00112233445566778899aabbccddeeff"}"#).unwrap();
        assert!(KeyFile::load(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
