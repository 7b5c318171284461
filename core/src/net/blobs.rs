//! Content-addressed attachments ("blobs"): the local blob directory and
//! the `/starling/blob/1` fetch protocol.
//!
//! Storage: `<data_dir>/blobs/<64 hex chars of the BLAKE3 hash>`, written
//! to a temporary file and renamed, so a blob file is either absent or
//! complete. A blob's id is the BLAKE3 hash of its bytes, so whatever a
//! peer sends is checked against the id that was asked for before it is
//! stored: a peer can waste our bandwidth (bounded by the size cap) but
//! cannot make us store or show bytes other than the ones the author
//! referenced.
//!
//! Cache: blobs fetched from peers are a cache, capped at
//! [`crate::net::NetConfig::blob_cache_bytes`]. When it is over the cap the
//! least recently used blobs (file modification time, bumped on every
//! read) are deleted — except blobs referenced by this node's own entries
//! (attachments and avatar), which are never evicted.
//!
//! Wire protocol (one request per stream; integers big-endian):
//!
//! ```text
//! request:  0x01 || blob id (32) || max_size u64
//! response: 0x00 || size u64 || size bytes     -- have it
//!           0x01                               -- not here
//!           0x02 || size u64                   -- bigger than max_size
//! ```

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Node;
use crate::error::{Error, Result};
use crate::feed::BlobRef;
use crate::identity::id::BlobId;
use crate::node::PageRequest;

/// Name of the blob directory inside the data dir.
pub const BLOB_DIR: &str = "blobs";
/// Stream protocol name of blob fetches.
pub const BLOB_PROTOCOL: &str = "/starling/blob/1";
/// How long one fetch from one peer may take before we try the next one.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

const REQ_VERSION: u8 = 0x01;
const RESP_HAVE: u8 = 0x00;
const RESP_MISSING: u8 = 0x01;
const RESP_TOO_LARGE: u8 = 0x02;
/// MIME type used when none is given or guessed.
const DEFAULT_MIME: &str = "application/octet-stream";

/// The blob directory of one node.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    max_size: u64,
    cache_limit: u64,
}

impl BlobStore {
    /// Opens (creating if needed) `<data_dir>/blobs`. Blobs larger than
    /// `max_size` are refused; the cache is trimmed to `cache_limit` bytes.
    pub fn open(data_dir: &Path, max_size: u64, cache_limit: u64) -> Result<Self> {
        let dir = data_dir.join(BLOB_DIR);
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            max_size,
            cache_limit,
        })
    }

    /// Largest blob accepted.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Where the blob `id` is (or would be) stored.
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        self.dir.join(hex_of(id.as_bytes()))
    }

    /// Whether the blob is stored locally.
    pub fn has(&self, id: &BlobId) -> bool {
        self.path_of(id).is_file()
    }

    /// Stores `bytes` and returns the reference to put in a post or profile.
    ///
    /// Errors: [`Error::InvalidInput`] if larger than the size cap or `mime`
    /// is not 1..=64 printable ASCII bytes.
    pub fn add_bytes(&self, bytes: &[u8], mime: &str) -> Result<BlobRef> {
        let size = bytes.len() as u64;
        if size > self.max_size {
            return Err(Error::InvalidInput(format!(
                "blob of {size} bytes exceeds the {} byte limit",
                self.max_size
            )));
        }
        if mime.is_empty() || mime.len() > 64 || !mime.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidInput(format!("bad MIME type {mime:?}")));
        }
        let id = BlobId::from_bytes(*blake3::hash(bytes).as_bytes());
        self.write_atomically(&id, bytes)?;
        Ok(BlobRef {
            id,
            size,
            mime: mime.to_string(),
        })
    }

    /// Stores the file at `path` (MIME type guessed from its extension
    /// unless given).
    pub fn add_path(&self, path: &Path, mime: Option<&str>) -> Result<BlobRef> {
        let len = fs::metadata(path)?.len();
        if len > self.max_size {
            return Err(Error::InvalidInput(format!(
                "{} is {len} bytes, over the {} byte blob limit",
                path.display(),
                self.max_size
            )));
        }
        let bytes = fs::read(path)?;
        let mime = mime.map_or_else(|| guess_mime(path), str::to_string);
        self.add_bytes(&bytes, &mime)
    }

    /// The blob's bytes if stored here, checked against its id (a damaged
    /// file is deleted and reported as absent). Marks it recently used.
    pub fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>> {
        let path = self.path_of(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if blake3::hash(&bytes).as_bytes() != id.as_bytes() {
            tracing::warn!(blob = %id, "stored blob is damaged; deleting it");
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        touch(&path);
        Ok(Some(bytes))
    }

    /// Stores bytes received for `id` after checking they hash to it.
    ///
    /// Errors: [`Error::Crypto`] if they do not (nothing is stored).
    pub fn put_verified(&self, id: &BlobId, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.max_size {
            return Err(Error::InvalidInput("blob over the size cap".into()));
        }
        if blake3::hash(bytes).as_bytes() != id.as_bytes() {
            return Err(Error::Crypto(format!("blob {id} does not match its hash")));
        }
        self.write_atomically(id, bytes)
    }

    /// Total bytes stored.
    pub fn total_size(&self) -> Result<u64> {
        Ok(self.list()?.iter().map(|(_, len, _)| len).sum())
    }

    /// Deletes least recently used blobs not in `keep` until the directory
    /// holds at most the cache limit. Returns the number of bytes freed.
    pub fn evict(&self, keep: &HashSet<BlobId>) -> Result<u64> {
        let mut blobs = self.list()?;
        let mut total: u64 = blobs.iter().map(|(_, len, _)| len).sum();
        if total <= self.cache_limit {
            return Ok(0);
        }
        blobs.sort_by_key(|(_, _, used)| *used);
        let mut freed = 0;
        for (id, len, _) in blobs {
            if total <= self.cache_limit {
                break;
            }
            if keep.contains(&id) {
                continue;
            }
            if fs::remove_file(self.path_of(&id)).is_ok() {
                total -= len;
                freed += len;
            }
        }
        Ok(freed)
    }

    /// (id, size, last use) of every stored blob.
    fn list(&self) -> Result<Vec<(BlobId, u64, SystemTime)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(parse_hex_id) else {
                continue; // temporary files and strangers
            };
            let meta = entry.metadata()?;
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((id, meta.len(), used));
        }
        Ok(out)
    }

    fn write_atomically(&self, id: &BlobId, bytes: &[u8]) -> Result<()> {
        let path = self.path_of(id);
        if path.is_file() {
            touch(&path);
            return Ok(());
        }
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| Error::Crypto(e.to_string()))?;
        let tmp = self.dir.join(format!(".tmp-{}", hex_of(&nonce)));
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        Ok(())
    }
}

/// Blobs referenced by the local identity's own entries (post attachments
/// and the avatar): never evicted from the cache.
pub fn own_blob_ids(node: &Node) -> Result<HashSet<BlobId>> {
    let mut keep = HashSet::new();
    let Ok(me) = node.whoami() else {
        return Ok(keep);
    };
    if let Some(avatar) = node.profile(me)?.avatar {
        keep.insert(avatar.id);
    }
    let mut page = PageRequest {
        limit: crate::node::MAX_PAGE,
        before: None,
    };
    loop {
        let p = node.feed(me, page)?;
        for post in &p.items {
            keep.extend(post.attachments.iter().map(|a| a.id));
        }
        match p.next {
            Some(next) => {
                page = PageRequest {
                    limit: crate::node::MAX_PAGE,
                    before: Some(next),
                }
            }
            None => break,
        }
    }
    Ok(keep)
}

/// Answers one blob request read from `stream`.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    store: &BlobStore,
    mut stream: S,
) -> Result<()> {
    let mut req = [0u8; 1 + 32 + 8];
    stream.read_exact(&mut req).await?;
    if req[0] != REQ_VERSION {
        return Err(Error::InvalidInput("unknown blob request version".into()));
    }
    let mut idb = [0u8; 32];
    idb.copy_from_slice(&req[1..33]);
    let mut maxb = [0u8; 8];
    maxb.copy_from_slice(&req[33..41]);
    let id = BlobId::from_bytes(idb);
    let max = u64::from_be_bytes(maxb).min(store.max_size);
    // Blocking file read on a runtime thread: blobs are at most 16 MiB and
    // this keeps the protocol code runtime-agnostic.
    match store.get(&id)? {
        None => stream.write_all(&[RESP_MISSING]).await?,
        Some(bytes) if bytes.len() as u64 > max => {
            let mut r = vec![RESP_TOO_LARGE];
            r.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            stream.write_all(&r).await?;
        }
        Some(bytes) => {
            let mut head = vec![RESP_HAVE];
            head.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            stream.write_all(&head).await?;
            stream.write_all(&bytes).await?;
        }
    }
    stream.flush().await?;
    stream.close().await?;
    Ok(())
}

/// Asks the peer behind `stream` for blob `id` (at most `max_size` bytes).
/// Returns `Ok(None)` if the peer does not have it; the bytes otherwise,
/// verified against `id`.
///
/// Errors: [`Error::Crypto`] if the bytes do not hash to `id`;
/// [`Error::InvalidInput`] for a malformed or oversized answer.
pub async fn fetch<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    id: &BlobId,
    max_size: u64,
) -> Result<Option<Vec<u8>>> {
    let mut req = vec![REQ_VERSION];
    req.extend_from_slice(id.as_bytes());
    req.extend_from_slice(&max_size.to_be_bytes());
    stream.write_all(&req).await?;
    stream.flush().await?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).await?;
    match status[0] {
        RESP_MISSING => Ok(None),
        RESP_TOO_LARGE => Err(Error::InvalidInput(format!(
            "blob {id} is larger than {max_size} bytes"
        ))),
        RESP_HAVE => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len).await?;
            let len = u64::from_be_bytes(len);
            if len > max_size {
                return Err(Error::InvalidInput(format!(
                    "peer offered {len} bytes for blob {id}, over the {max_size} byte cap"
                )));
            }
            let len = usize::try_from(len)
                .map_err(|_| Error::InvalidInput("blob size does not fit memory".into()))?;
            let mut bytes = vec![0u8; len];
            stream.read_exact(&mut bytes).await?;
            if blake3::hash(&bytes).as_bytes() != id.as_bytes() {
                return Err(Error::Crypto(format!(
                    "peer sent bytes that are not blob {id}"
                )));
            }
            Ok(Some(bytes))
        }
        other => Err(Error::InvalidInput(format!(
            "unknown blob response {other}"
        ))),
    }
}

/// MIME type from a file extension (a small table of what apps attach).
pub fn guess_mime(path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "m4a" => "audio/mp4",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "json" => "application/json",
        _ => DEFAULT_MIME,
    }
    .to_string()
}

fn touch(path: &Path) {
    if let Ok(f) = fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn hex_of(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn parse_hex_id(name: &str) -> Option<BlobId> {
    if name.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in name.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(BlobId::from_bytes(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_get_verify_and_evict_lru_but_keep_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1000, 250).unwrap();
        let a = store.add_bytes(&[1u8; 100], "image/png").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let b = store.add_bytes(&[2u8; 100], "image/png").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let c = store.add_bytes(&[3u8; 100], "image/png").unwrap();
        assert!(store.add_bytes(&[0u8; 1001], "image/png").is_err());
        assert_eq!(store.get(&a.id).unwrap().unwrap(), vec![1u8; 100]);
        // A damaged file is dropped, not served.
        fs::write(store.path_of(&b.id), b"junk").unwrap();
        assert!(store.get(&b.id).unwrap().is_none());
        let d = store.add_bytes(&[4u8; 100], "text/plain").unwrap();
        // Total 300 (a, c, d) > 250: the LRU one that is not kept goes.
        let keep: HashSet<BlobId> = [c.id].into_iter().collect();
        std::thread::sleep(Duration::from_millis(20));
        store.get(&a.id).unwrap(); // a is now the most recent
        assert_eq!(store.evict(&keep).unwrap(), 100);
        assert!(store.has(&a.id) && store.has(&c.id) && !store.has(&d.id));
        assert!(store.put_verified(&d.id, &[5u8; 100]).is_err());
        assert!(!store.has(&d.id));
    }

    #[tokio::test]
    async fn fetch_protocol_checks_hash_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1 << 20, 1 << 30).unwrap();
        let r = store.add_bytes(b"hello blob", "text/plain").unwrap();
        let (a, b) = tokio::io::duplex(1 << 16);
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let server = tokio::spawn({
            let store = store.clone();
            async move { serve(&store, b.compat()).await }
        });
        let got = fetch(a.compat(), &r.id, 1 << 20).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"hello blob"[..]));
        server.await.unwrap().unwrap();

        // Too large for the asker's cap.
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn({
            let store = store.clone();
            async move { serve(&store, b.compat()).await }
        });
        assert!(fetch(a.compat(), &r.id, 3).await.is_err());
        let _ = server.await;

        // A lying server: right header, wrong bytes.
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut b = b.compat();
            let mut req = [0u8; 41];
            let _ = b.read_exact(&mut req).await;
            let mut resp = vec![RESP_HAVE];
            resp.extend_from_slice(&10u64.to_be_bytes());
            resp.extend_from_slice(b"HELLO BLOB");
            let _ = b.write_all(&resp).await;
        });
        assert!(matches!(
            fetch(a.compat(), &r.id, 1 << 20).await,
            Err(Error::Crypto(_))
        ));
    }
}
