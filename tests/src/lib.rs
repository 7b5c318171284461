//! Helpers for the integration tests in `tests/tests/`: they drive the real
//! `starling` binary in temporary data dirs and inspect what it leaves on
//! disk.
//!
//! # Finding the binary
//!
//! `CARGO_BIN_EXE_starling` is only set for tests of the package that owns
//! the binary (`starling-cli`), and Cargo cannot (on stable) make one
//! package's tests depend on another package's binary. So [`starling_bin`]:
//!
//! 1. uses `STARLING_BIN` if set (to test an installed or release build);
//! 2. otherwise runs `$CARGO build -p starling-cli --bin starling` once per
//!    test process, into the same target dir and profile as the running
//!    test (derived from `std::env::current_exe()`: `<target>/<profile>/deps/…`),
//!    so the binary is always fresh, whichever way the tests were started
//!    (`cargo test --workspace` or `cargo test -p starling-tests`). When
//!    everything is up to date this takes a fraction of a second;
//! 3. falls back to `<target>/<profile>/starling` as is when `CARGO` is not
//!    set (a test binary run by hand) or `STARLING_TESTS_NO_BUILD=1`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// Passphrase used by every test node unless a test says otherwise.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Path of a fresh `starling` binary (see the module docs).
pub fn starling_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate_or_build)
}

fn locate_or_build() -> PathBuf {
    if let Some(bin) = std::env::var_os("STARLING_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join(format!("starling{}", std::env::consts::EXE_SUFFIX));
    let no_build = std::env::var_os("STARLING_TESTS_NO_BUILD").is_some_and(|v| v == "1");
    if let (Some(cargo), false) = (std::env::var_os("CARGO"), no_build) {
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "-p",
                "starling-cli",
                "--bin",
                "starling",
            ])
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .expect("running cargo build for the starling binary");
        assert!(
            out.status.success(),
            "building the starling binary failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        bin.exists(),
        "{} does not exist; build it with `cargo build -p starling-cli` or set STARLING_BIN",
        bin.display()
    );
    bin
}

/// The result of one `starling` run.
#[derive(Debug)]
pub struct Run {
    /// Exit status (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

impl Run {
    fn from_output(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stdout parsed as exactly one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not exactly one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A data dir with its own identity, driven through the `starling` binary.
pub struct TestNode {
    dir: tempfile::TempDir,
    /// Passphrase put in `STARLING_PASSPHRASE`.
    pub passphrase: String,
}

impl Default for TestNode {
    fn default() -> Self {
        Self::new()
    }
}

impl TestNode {
    /// An empty data dir (no identity yet).
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("starling-test-")
                .tempdir()
                .expect("tempdir"),
            passphrase: PASSPHRASE.to_string(),
        }
    }

    /// A data dir with an identity named `name`; returns the node and its id.
    pub fn with_identity(name: &str) -> (Self, String) {
        let node = Self::new();
        let v = node.ok(&["init", "--name", name]);
        let id = v["author"].as_str().expect("author").to_string();
        (node, id)
    }

    /// The data dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `starling` command for this data dir: passphrase from the
    /// environment, no stdin, no inherited Starling settings.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(starling_bin());
        cmd.env("STARLING_DATA_DIR", self.path())
            .env("STARLING_PASSPHRASE", &self.passphrase)
            .env_remove("STARLING_INSECURE_KEY_FILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// [`TestNode::command`] run inside the network namespace `ns`
    /// (`ip netns exec NS starling …`, same environment).
    pub fn command_in_netns(&self, ns: &str) -> Command {
        let plain = self.command();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(starling_bin());
        for (k, v) in plain.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `starling --json ARGS` and captures everything.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(), args)
    }

    /// Runs a prepared command with `--json ARGS`.
    pub fn run_with(&self, mut cmd: Command, args: &[&str]) -> Run {
        cmd.arg("--json").args(args);
        Run::from_output(cmd.output().expect("spawning starling"))
    }

    /// Runs `starling --json ARGS`, asserts success and returns the JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "`starling {}` failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run.json()
    }

    /// Publishes a post and returns its entry id.
    pub fn post(&self, text: &str) -> String {
        self.ok(&["post", text])["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Texts of the posts in a `{"items": [...]}` document.
    pub fn texts(doc: &Value) -> Vec<String> {
        doc["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect()
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("starling.db")
    }

    /// A logical snapshot of the store: every row of every table, plus the
    /// contents of every non-database file in the data dir.
    pub fn snapshot(&self) -> Snapshot {
        snapshot_of(self.path())
    }
}

/// What a data dir holds, for before/after comparisons.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// table name → its rows, rendered and sorted.
    pub tables: BTreeMap<String, Vec<String>>,
    /// Non-SQLite files (keyfile.json, ...) → their bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Snapshot of the data dir at `dir` (see [`TestNode::snapshot`]).
pub fn snapshot_of(dir: &Path) -> Snapshot {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("read data dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("starling.db") || !entry.path().is_file() {
            continue;
        }
        files.insert(name, fs::read(entry.path()).expect("read file"));
    }
    let mut tables = BTreeMap::new();
    let db = dir.join("starling.db");
    if db.exists() {
        let conn = rusqlite::Connection::open_with_flags(
            &db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open db read-only");
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("list tables")
            .query_map([], |r| r.get(0))
            .expect("list tables")
            .collect::<Result<_, _>>()
            .expect("table names");
        for name in names {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))
                .expect("select");
            let cols = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    let mut row = Vec::with_capacity(cols);
                    for i in 0..cols {
                        row.push(format!("{:?}", r.get_ref(i)?));
                    }
                    Ok(row.join("|"))
                })
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("rows");
            rows.sort();
            tables.insert(name, rows);
        }
    }
    Snapshot { tables, files }
}

/// Files under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(path);
            }
        }
    }
    hits
}

/// Copies every file of `from` (not recursive) into the new dir `to`, byte
/// for byte, as they are on disk right now.
pub fn copy_dir_files(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_file() {
            fs::copy(&path, to.join(path.file_name().expect("file name"))).expect("copy file");
        }
    }
}

/// A unique marker for test texts.
pub fn nonce() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", t, std::process::id())
}

/// Spawns `cmd` (a `starling --json serve …`) with its stdout piped and
/// waits up to 30 s for the one-line JSON document it prints at startup.
/// A thread keeps draining stdout afterwards, so the node's last line
/// ("stopped") always has a reader. Panics, after killing the process, if
/// no line comes or the line is not JSON.
pub fn spawn_serve(mut cmd: Command) -> (Child, Value) {
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn starling serve");
    let stdout = child.stdout.take().expect("serve's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
            rest.clear();
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            panic!("serve printed no startup line in time: {e}");
        }
    };
    match serde_json::from_str(&line) {
        Ok(startup) => (child, startup),
        Err(e) => {
            let _ = child.kill();
            panic!("serve's startup line is not JSON ({e}): {line:?}");
        }
    }
}

/// Sends SIGTERM to `child` (a `starling serve` stops gracefully on it) and
/// waits up to `limit` for it to exit; then kills it. Returns the exit code
/// if it exited by itself in time.
pub fn terminate(child: &mut Child, limit: Duration) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
