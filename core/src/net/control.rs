//! The control channel: lets `starling` commands run in another process
//! reach the running node (`starling serve`) over a Unix socket in the data
//! dir, `<data_dir>/control.sock`.
//!
//! Protocol: JSON lines. The client writes one request object per line and
//! reads one response object per line:
//!
//! ```text
//! → {"cmd":"status"}                      ← {"ok":true,"result":{"peer_id":…,"listen":[…],"data_dir":…,"relay":…,"reachability":"unknown"|"public"|"private","external":[…]}}
//! → {"cmd":"peers"}                       ← {"ok":true,"result":[{"peer":…,"addrs":[…],"connected_since_ms":…,"syncing":…,"relay":…,"relayed":…}]}
//! → {"cmd":"dial","addr":"/ip4/…"}        ← {"ok":true,"result":{"peer":…}}
//! → {"cmd":"invite_create","ttl_secs":N}  ← {"ok":true,"result":{"code":"stlinv1…","expires_at_ms":…}}
//! → {"cmd":"invite_accept","code":"…"}    ← {"ok":true,"result":{"inviter":"stl1…","relay":…,"reservation":{"status":…}}}
//! → {"cmd":"sync_status"}                 ← {"ok":true,"result":[{"peer":…,"connected":…,"feeds_in_sync":…,"entries_behind":…,"author":…}]}
//! → {"cmd":"blob_fetch","id":"stlb1…"}    ← {"ok":true,"result":{"id":…,"size":…}}
//! → {"cmd":"relays"}                      ← {"ok":true,"result":[{"peer":…,"addrs":[…],"listening":"/…/p2p-circuit/…"|null}]}
//! → {"cmd":"relay_forget","peer":"12D3…"} ← {"ok":true,"result":{"forgotten":true|false}}
//! errors:                                 ← {"ok":false,"error":"…","kind":"bad_input"|"not_found"|"other"}
//! ```
//!
//! Guarantees: the socket is created with mode 0600 (only the data dir's
//! owner can talk to the node); lines longer than 64 KiB end the
//! connection; a stale socket left by a crashed node is replaced, while a
//! live one makes the second `serve` fail instead of hijacking it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::identity::id::BlobId;
use crate::net::Network;
use crate::net::invite::{InviteAnswer, RelayReservation};

/// File name of the socket inside the data dir.
pub const CONTROL_SOCKET: &str = "control.sock";
/// Longest request or response line.
const MAX_LINE: usize = 64 * 1024;

/// Path of the control socket of the node in `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONTROL_SOCKET)
}

/// Starts serving the control socket for `net` (a task on the current
/// runtime, ended by [`Network::stop`]).
pub(crate) fn serve(net: Network) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(net.node().data_dir());
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(Error::InvalidInput(format!(
                "another node is already running on this data dir ({} answers)",
                path.display()
            )));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let net2 = net.clone();
    let mut stop = net.shutdown_signal();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => return,
                a = listener.accept() => a,
            };
            let Ok((conn, _)) = accepted else {
                return;
            };
            let net = net2.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.len() > MAX_LINE {
                        return;
                    }
                    let reply = match serde_json::from_str::<Value>(&line) {
                        Ok(req) => handle(&net, &req).await,
                        Err(e) => error_reply(&Error::InvalidInput(format!("bad JSON: {e}"))),
                    };
                    let mut out = reply.to_string();
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Removes the socket file (on stop).
pub(crate) fn remove_socket(data_dir: &Path) {
    let _ = std::fs::remove_file(socket_path(data_dir));
}

async fn handle(net: &Network, req: &Value) -> Value {
    match dispatch(net, req).await {
        Ok(result) => json!({ "ok": true, "result": result }),
        Err(e) => error_reply(&e),
    }
}

fn error_reply(e: &Error) -> Value {
    let kind = match e {
        Error::InvalidInput(_) | Error::InvalidId { .. } | Error::Decode(_) => "bad_input",
        Error::NotFound(_) => "not_found",
        Error::Locked(_) => "locked",
        _ => "other",
    };
    json!({ "ok": false, "error": e.to_string(), "kind": kind })
}

fn str_arg<'a>(req: &'a Value, name: &str) -> Result<&'a str> {
    req.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidInput(format!("missing string argument {name:?}")))
}

async fn dispatch(net: &Network, req: &Value) -> Result<Value> {
    let cmd = str_arg(req, "cmd")?;
    match cmd {
        "status" => Ok(json!({
            "peer_id": net.peer_id().to_string(),
            "listen": net.listen_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "data_dir": net.node().data_dir().display().to_string(),
            "relay": net.config().relay_server,
            "reachability": net.reachability().as_str(),
            "external": net.external_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
        "peers" => Ok(Value::Array(
            net.peers()
                .iter()
                .map(|p| {
                    json!({
                        "peer": p.peer.to_string(),
                        "addrs": p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "connected_since_ms": p.connected_since_ms,
                        "syncing": p.syncing,
                        "relay": p.relay,
                        "relayed": p.relayed,
                    })
                })
                .collect(),
        )),
        "dial" => {
            let addr = str_arg(req, "addr")?
                .parse()
                .map_err(|e| Error::InvalidInput(format!("bad multiaddr: {e}")))?;
            let peer = net.dial(addr).await?;
            Ok(json!({ "peer": peer.to_string() }))
        }
        "invite_create" => {
            let ttl = req
                .get("ttl_secs")
                .and_then(Value::as_u64)
                .map_or(crate::net::invite::DEFAULT_INVITE_TTL, Duration::from_secs);
            let code = net.create_invite(ttl)?;
            let expires = crate::store::now_ms().saturating_add(ttl.as_millis() as u64);
            Ok(json!({ "code": code, "expires_at_ms": expires }))
        }
        "invite_accept" => {
            let answer = net.accept_invite(str_arg(req, "code")?).await?;
            Ok(invite_answer_json(&answer))
        }
        "sync_status" => Ok(Value::Array(
            net.sync_status()
                .iter()
                .map(|s| {
                    json!({
                        "peer": s.peer,
                        "connected": s.connected,
                        "feeds_in_sync": s.feeds_in_sync,
                        "entries_behind": s.entries_behind,
                        "author": s.author.map(|a| a.to_string()),
                    })
                })
                .collect(),
        )),
        "blob_fetch" => {
            let id: BlobId = str_arg(req, "id")?.parse()?;
            let bytes = net.fetch_blob(id).await?;
            Ok(json!({ "id": id.to_string(), "size": bytes.len() }))
        }
        "relays" => Ok(Value::Array(
            net.relays()?
                .iter()
                .map(|r| {
                    json!({
                        "peer": r.peer.to_string(),
                        "addrs": r.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "listening": r.listening.as_ref().map(ToString::to_string),
                    })
                })
                .collect(),
        )),
        "relay_forget" => {
            let peer = str_arg(req, "peer")?
                .parse()
                .map_err(|e| Error::InvalidInput(format!("bad network id: {e}")))?;
            Ok(json!({ "forgotten": net.forget_relay(peer)? }))
        }
        other => Err(Error::InvalidInput(format!("unknown command {other:?}"))),
    }
}

/// The JSON of an accepted invite (also used by the CLI's offline accept):
/// `{"inviter":…,"relay":…,"reservation":{"status":"not_requested"|"listening"|"failed",…}}`.
pub fn invite_answer_json(answer: &InviteAnswer) -> Value {
    let reservation = match &answer.reservation {
        RelayReservation::NotRequested => json!({ "status": "not_requested" }),
        RelayReservation::Listening(circuit) => {
            json!({ "status": "listening", "circuit": circuit.to_string() })
        }
        RelayReservation::Failed(e) => json!({
            "status": "failed",
            "attempts": e.attempts,
            "error": e.to_string(),
        }),
    };
    json!({
        "inviter": answer.inviter.to_string(),
        "relay": answer.relay,
        "reservation": reservation,
    })
}

/// Client side (blocking, for the CLI): sends one request to the node
/// running on `data_dir` and returns its `result`.
///
/// Errors: [`Error::NotFound`] if no node is running there; the node's
/// error otherwise ([`Error::InvalidInput`] for bad input,
/// [`Error::NotFound`], or [`Error::Io`] for anything else).
pub fn request(data_dir: &Path, req: &Value, timeout: Duration) -> Result<Value> {
    let path = socket_path(data_dir);
    let mut conn = std::os::unix::net::UnixStream::connect(&path).map_err(|_| {
        Error::NotFound(format!(
            "no running node on {} (start one with `starling serve`)",
            data_dir.display()
        ))
    })?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    let mut line = req.to_string();
    line.push('\n');
    conn.write_all(line.as_bytes())?;
    let mut reader = BufReader::new(conn).take(MAX_LINE as u64);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    let v: Value = serde_json::from_str(&answer).map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "bad answer from the node: {e}"
        )))
    })?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(v.get("result").cloned().unwrap_or(Value::Null));
    }
    let msg = v
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("the node reported an error")
        .to_string();
    Err(match v.get("kind").and_then(Value::as_str) {
        Some("bad_input") => Error::InvalidInput(msg),
        Some("not_found") => Error::NotFound(msg),
        Some("locked") => Error::Locked(msg),
        _ => Error::Io(std::io::Error::other(msg)),
    })
}
