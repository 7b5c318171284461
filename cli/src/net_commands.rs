//! The network commands: `serve` runs the node on the network in the
//! foreground; `invite`, `peers`, `status`, `dial` and `sync status` talk to that
//! running node over its control socket (`<data_dir>/control.sock`, see
//! `starling_core::net::control`); `blob add/get` work on the data dir's
//! blob store and ask the running node to fetch blobs that are not local.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};
use starling_core::net::blobs::BlobStore;
use starling_core::net::config::{DEFAULT_BLOB_CACHE_BYTES, DEFAULT_MAX_BLOB_SIZE};
use starling_core::net::{Multiaddr, NetConfig, Network, control};
use starling_core::{BlobId, Node};
use zeroize::Zeroizing;

use crate::error::{CliError, CliResult};
use crate::keys::{CliKeys, Mode};
use crate::output::Report;

/// How long a command waits for the running node to answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// The network subcommands (flattened into the main command list).
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Run this node on the network in the foreground until Ctrl-C or
    /// SIGTERM: listen, discover peers, replicate. Creates an identity on
    /// first run.
    Serve {
        /// Address to listen on (repeatable). Default: all interfaces, a
        /// random port, TCP and QUIC.
        #[arg(long = "listen", value_name = "MULTIADDR")]
        listen: Vec<String>,
        /// Do not announce or discover peers on the local network (mDNS).
        #[arg(long)]
        no_mdns: bool,
        /// Act as a public relay: relay connections for others and host the
        /// feeds of the people you invite.
        #[arg(long)]
        relay: bool,
        /// Peer to connect to at start (repeatable).
        #[arg(long = "bootstrap", value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// Publish a signed "where to reach me" record in the DHT (links
        /// your author id to this device's network id; see PRIVACY.md).
        #[arg(long)]
        announce: bool,
    },
    /// Create or accept an invite.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Peers the running node is connected to, each marked direct or
    /// relayed.
    Peers,
    /// The running node's network id, listen and external addresses, and
    /// whether it is publicly reachable (as AutoNAT found).
    Status,
    /// Ask the running node to connect to a peer.
    Dial {
        /// Multiaddr, e.g. /ip4/192.0.2.7/tcp/4001/p2p/12D3Koo…
        addr: String,
    },
    /// Replication state.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Attachments (content-addressed blobs).
    #[command(subcommand)]
    Blob(BlobCommand),
    /// The relays this node keeps a reservation at (to stay reachable
    /// behind a NAT).
    #[command(subcommand)]
    Relay(RelayCommand),
}

/// `starling relay …`
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// The remembered relays, and the circuit address peers reach this
    /// node at through each while it holds a reservation there.
    List,
    /// Stop keeping a reservation at a relay and forget it.
    Forget {
        /// The relay's network id (12D3Koo…, as `starling relay list` shows).
        peer: String,
    },
}

/// `starling invite …`
#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create a one-time invite code (needs `starling serve` running).
    Create {
        /// How long the code stays valid, in seconds (default 7 days).
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        ttl_secs: u64,
    },
    /// Accept an invite code: connect to the inviter and follow each other.
    Accept {
        /// The code (stlinv1…).
        code: String,
    },
}

/// `starling sync …`
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Per peer: connected or not, feeds in sync, entries behind.
    Status,
}

/// `starling blob …`
#[derive(Debug, Subcommand)]
pub enum BlobCommand {
    /// Store a file as a blob and print its reference.
    Add {
        /// The file.
        file: PathBuf,
        /// MIME type (guessed from the extension otherwise).
        #[arg(long)]
        mime: Option<String>,
    },
    /// Get a blob: from this store, or fetched by the running node.
    Get {
        /// Blob id (stlb1…).
        id: String,
        /// Write it to FILE (default: stdout; with --json, its path).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs a network command for the data dir.
pub fn run(
    data_dir: &Path,
    insecure_key_file: Option<PathBuf>,
    command: NetCommand,
    as_json: bool,
) -> CliResult<Report> {
    match command {
        NetCommand::Serve {
            listen,
            no_mdns,
            relay,
            bootstrap,
            announce,
        } => {
            let mut config = NetConfig {
                mdns: !no_mdns,
                relay_server: relay,
                announce,
                ..NetConfig::default()
            };
            if !listen.is_empty() {
                config.listen = parse_addrs(&listen)?;
            }
            config.bootstrap = parse_addrs(&bootstrap)?;
            serve(data_dir, insecure_key_file, config, as_json)
        }
        NetCommand::Invite(InviteCommand::Create { ttl_secs }) => {
            let r = ask(
                data_dir,
                json!({ "cmd": "invite_create", "ttl_secs": ttl_secs }),
            )?;
            let code = r["code"].as_str().unwrap_or_default().to_string();
            Ok(Report::new(
                r.clone(),
                format!(
                    "{code}\nGive this one-time code to the person you invite; they run\n  starling invite accept CODE\n"
                ),
            ))
        }
        NetCommand::Invite(InviteCommand::Accept { code }) => {
            starling_core::net::invite::InviteCode::parse(&code).map_err(CliError::from)?;
            let r = match ask(data_dir, json!({ "cmd": "invite_accept", "code": code })) {
                Err(e) if e.message.starts_with("no running node") => {
                    accept_offline(data_dir, insecure_key_file, &code)?
                }
                other => other?,
            };
            let inviter = r["inviter"].as_str().unwrap_or_default();
            let mut text = format!("Invite accepted: you and {inviter} now follow each other.\n");
            if r["relay"].as_bool() == Some(true) {
                text.push_str("The inviter is a relay: it keeps your feed for your followers.\n");
            }
            match r["reservation"]["status"].as_str() {
                Some("listening") => text.push_str(&format!(
                    "Reachable through the relay at {}\n",
                    r["reservation"]["circuit"].as_str().unwrap_or_default()
                )),
                Some("failed") => text.push_str(&format!(
                    "Warning: {}; peers cannot reach you through it until you accept again or restart.\n",
                    r["reservation"]["error"].as_str().unwrap_or("the relay refused a reservation")
                )),
                _ => {}
            }
            Ok(Report::new(r, text))
        }
        NetCommand::Peers => {
            let r = ask(data_dir, json!({ "cmd": "peers" }))?;
            let mut text = String::new();
            for p in r.as_array().into_iter().flatten() {
                let addrs: Vec<&str> = p["addrs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                text.push_str(&format!(
                    "{}  {}{}{}\n",
                    p["peer"].as_str().unwrap_or_default(),
                    addrs.join(" "),
                    if p["relayed"].as_bool() == Some(true) {
                        "  (relayed)"
                    } else {
                        "  (direct)"
                    },
                    if p["syncing"].as_bool() == Some(true) {
                        "  (syncing)"
                    } else {
                        ""
                    }
                ));
            }
            if text.is_empty() {
                text = "No peers connected.\n".into();
            }
            Ok(Report::new(json!({ "peers": r }), text))
        }
        NetCommand::Status => {
            let r = ask(data_dir, json!({ "cmd": "status" }))?;
            let list = |key: &str| -> String {
                let v: Vec<&str> = r[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if v.is_empty() {
                    "none".into()
                } else {
                    v.join(" ")
                }
            };
            let text = format!(
                "Network id: {}\nListening on: {}\nExternal addresses: {}\nReachability (AutoNAT): {}\n",
                r["peer_id"].as_str().unwrap_or_default(),
                list("listen"),
                list("external"),
                r["reachability"].as_str().unwrap_or("unknown"),
            );
            Ok(Report::new(r, text))
        }
        NetCommand::Dial { addr } => {
            parse_addrs(std::slice::from_ref(&addr))?;
            let r = ask(data_dir, json!({ "cmd": "dial", "addr": addr }))?;
            let text = format!("Connected to {}\n", r["peer"].as_str().unwrap_or_default());
            Ok(Report::new(r, text))
        }
        NetCommand::Sync(SyncCommand::Status) => {
            let r = ask(data_dir, json!({ "cmd": "sync_status" }))?;
            let mut text = String::new();
            for s in r.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "{} {}  {}  feeds in sync: {}  entries behind: {}\n",
                    s["peer"].as_str().unwrap_or_default(),
                    s["author"]
                        .as_str()
                        .map(|a| format!("({a})"))
                        .unwrap_or_default(),
                    if s["connected"].as_bool() == Some(true) {
                        "connected"
                    } else {
                        "not connected"
                    },
                    s["feeds_in_sync"],
                    s["entries_behind"],
                ));
            }
            if text.is_empty() {
                text = "No sync sessions yet.\n".into();
            }
            Ok(Report::new(json!({ "peers": r }), text))
        }
        NetCommand::Blob(BlobCommand::Add { file, mime }) => {
            let store = blob_store(data_dir)?;
            let r = store
                .add_path(&file, mime.as_deref())
                .map_err(CliError::from)?;
            Ok(Report::new(
                json!({ "id": r.id.to_string(), "size": r.size, "mime": r.mime }),
                format!("{}\n{} bytes, {}\n", r.id, r.size, r.mime),
            ))
        }
        NetCommand::Blob(BlobCommand::Get { id, out }) => {
            let id: BlobId = id.parse().map_err(CliError::from)?;
            let store = blob_store(data_dir)?;
            if !store.has(&id) {
                ask(
                    data_dir,
                    json!({ "cmd": "blob_fetch", "id": id.to_string() }),
                )?;
            }
            let bytes = store
                .get(&id)
                .map_err(CliError::from)?
                .ok_or_else(|| CliError::bad_input(format!("blob {id} is not available")))?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes)?;
                    Ok(Report::new(
                        json!({ "id": id.to_string(), "size": bytes.len(), "out": path.display().to_string() }),
                        format!("Wrote {} bytes to {}\n", bytes.len(), path.display()),
                    ))
                }
                None if as_json => Ok(Report::new(
                    json!({ "id": id.to_string(), "size": bytes.len(), "path": store.path_of(&id).display().to_string() }),
                    String::new(),
                )),
                None => {
                    std::io::stdout().write_all(&bytes)?;
                    Ok(Report::new(Value::Null, String::new()))
                }
            }
        }
        NetCommand::Relay(RelayCommand::List) => {
            let r = ask(data_dir, json!({ "cmd": "relays" }))?;
            let mut text = String::new();
            for relay in r.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "{}  {}
",
                    relay["peer"].as_str().unwrap_or_default(),
                    match relay["listening"].as_str() {
                        Some(circuit) => format!("reachable at {circuit}"),
                        None => "asking for a reservation".into(),
                    }
                ));
            }
            if text.is_empty() {
                text = "No relays: accept an invite from a node run with `serve --relay`.\n".into();
            }
            Ok(Report::new(json!({ "relays": r }), text))
        }
        NetCommand::Relay(RelayCommand::Forget { peer }) => {
            let r = ask(data_dir, json!({ "cmd": "relay_forget", "peer": peer }))?;
            let text = if r["forgotten"].as_bool() == Some(true) {
                format!("Forgot relay {peer}; no longer reachable through it.\n")
            } else {
                format!("{peer} was not a remembered relay.\n")
            };
            Ok(Report::new(r, text))
        }
    }
}

fn parse_addrs(addrs: &[String]) -> CliResult<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>()
                .map_err(|e| CliError::bad_input(format!("bad multiaddr {a:?}: {e}")))
        })
        .collect()
}

fn blob_store(data_dir: &Path) -> CliResult<BlobStore> {
    BlobStore::open(data_dir, DEFAULT_MAX_BLOB_SIZE, DEFAULT_BLOB_CACHE_BYTES)
        .map_err(CliError::from)
}

/// One request to the running node.
fn ask(data_dir: &Path, req: Value) -> CliResult<Value> {
    control::request(data_dir, &req, CONTROL_TIMEOUT).map_err(|e| match e {
        starling_core::Error::NotFound(m) if m.starts_with("no running node") => {
            CliError::other(m).hint("start the node with `starling serve` (in another terminal)")
        }
        other => CliError::from(other),
    })
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::other(format!("cannot start the async runtime: {e}")))
}

/// Opens the node, creating an identity if there is none yet. Returns the
/// node and, for a new identity, its recovery phrase.
fn open_or_create(
    data_dir: &Path,
    insecure_key_file: Option<PathBuf>,
) -> CliResult<(Arc<Node>, Option<Zeroizing<String>>)> {
    let fresh = !data_dir.join("starling.db").exists();
    let mode = if fresh { Mode::Create } else { Mode::Open };
    let keys = Arc::new(CliKeys::new(data_dir, insecure_key_file, mode));
    let node = Node::open(data_dir, keys.clone())
        .map_err(|e| keys.take_error().unwrap_or_else(|| CliError::from(e)))?;
    let core = |r: starling_core::Error| keys.take_error().unwrap_or_else(|| CliError::from(r));
    if node.has_identity().map_err(core)? {
        return Ok((Arc::new(node), None));
    }
    if !fresh {
        return Err(CliError::other("this data dir has no identity yet")
            .hint("create one with `starling init` first"));
    }
    keys.unlock()?;
    let persisted = keys.persist()?;
    match node.create_identity(None) {
        Ok((_, phrase)) => Ok((
            Arc::new(node),
            Some(Zeroizing::new(phrase.expose().to_string())),
        )),
        Err(e) => {
            persisted.undo();
            Err(core(e))
        }
    }
}

fn serve(
    data_dir: &Path,
    insecure_key_file: Option<PathBuf>,
    config: NetConfig,
    as_json: bool,
) -> CliResult<Report> {
    let (node, phrase) = open_or_create(data_dir, insecure_key_file)?;
    let author = node.whoami().map_err(CliError::from)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let net = Network::start(node.clone(), config)
            .await
            .map_err(CliError::from)?;
        let listen: Vec<String> = net.listen_addrs().iter().map(ToString::to_string).collect();
        let mut doc = json!({
            "event": "listening",
            "peer_id": net.peer_id().to_string(),
            "author": author.to_string(),
            "listen": listen,
            "data_dir": data_dir.display().to_string(),
            "created_identity": phrase.is_some(),
        });
        if let Some(p) = &phrase {
            doc["recovery_phrase"] = Value::String(p.to_string());
        }
        if as_json {
            println!("{doc}");
        } else {
            if let Some(p) = &phrase {
                println!("Created a new identity {author}\nRecovery phrase (write it down, keep it private):\n  {}\n", p.as_str());
            }
            println!("Starling node {author}\nData dir: {}\nPeer id:  {}", data_dir.display(), net.peer_id());
            for a in &listen {
                println!("Listening on {a}");
            }
            println!("Press Ctrl-C to stop.");
        }
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
        tracing::info!("stopping");
        net.stop().await;
        Ok(Report::new(json!({ "event": "stopped" }), "Stopped.\n"))
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `invite accept` when no node is running: a short-lived network of our
/// own that connects, redeems the invite, syncs briefly and stops.
fn accept_offline(
    data_dir: &Path,
    insecure_key_file: Option<PathBuf>,
    code: &str,
) -> CliResult<Value> {
    let keys = Arc::new(CliKeys::new(data_dir, insecure_key_file, Mode::Open));
    let node = Node::open(data_dir, keys.clone())
        .map_err(|e| keys.take_error().unwrap_or_else(|| CliError::from(e)))?;
    let node = Arc::new(node);
    let rt = runtime()?;
    rt.block_on(async move {
        let config = NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .map_err(|_| CliError::other("listen address"))?,
            ],
            mdns: false,
            control_socket: false,
            redial_known_peers: false,
            ..NetConfig::default()
        };
        let net = Network::start(node, config)
            .await
            .map_err(|e| keys.take_error().unwrap_or_else(|| CliError::from(e)))?;
        let result = net.accept_invite(code).await;
        if result.is_ok() {
            // Give the first sync session a moment to exchange the follows.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        net.stop().await;
        let answer = result.map_err(CliError::from)?;
        Ok(control::invite_answer_json(&answer))
    })
}
