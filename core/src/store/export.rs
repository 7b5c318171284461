//! The portable feed file used by `export_feed` / `import`.
//!
//! ```text
//! magic   b"STARLING-FEED\n" (14 bytes)
//! version u8 = 1
//! records, until end of file:
//!   u32 BE  entry length (1..=256)
//!   bytes   the encoded entry
//!   u8      payload flag: 0 = no payload, 1 = payload follows
//!   [u32 BE payload length (<= MAX_PAYLOAD_LEN), payload bytes]
//! ```
//!
//! Entries are written in feed order (seq ascending), so importing a file
//! replays the chain exactly as ingest expects it. Reading is total: every
//! length is checked against its limit before anything is allocated, and a
//! file that ends inside a record is an error, never a silently shorter feed.

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::Path;

use rusqlite::Connection;

use crate::encoding::DecodeError;
use crate::error::{Error, Result};
use crate::feed::MAX_PAYLOAD_LEN;
use crate::identity::id::AuthorId;
use crate::store::ingest::IncomingEntry;

/// First bytes of every feed file.
pub const MAGIC: &[u8; 14] = b"STARLING-FEED\n";
/// The feed file version this build writes and reads.
pub const VERSION: u8 = 1;
/// Largest entry record accepted (entries are 149 or 181 bytes today; the
/// slack lets a future entry version through to a typed decode error).
pub const MAX_ENTRY_RECORD: u32 = 256;

/// Writes `author`'s feed to `path` (through a temporary file renamed into
/// place, so a crash never leaves a half-written export under that name).
/// Returns the number of entries written.
pub(crate) fn export_feed(conn: &Connection, author: &AuthorId, path: &Path) -> Result<u64> {
    let tmp = path.with_extension("partial");
    let mut out = BufWriter::new(File::create(&tmp)?);
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    let mut stmt =
        conn.prepare("SELECT encoded, payload FROM entries WHERE author = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([author.as_bytes()])?;
    let mut count = 0u64;
    while let Some(row) = rows.next()? {
        let entry: Vec<u8> = row.get(0)?;
        let payload: Option<Vec<u8>> = row.get(1)?;
        write_record(&mut out, &entry, payload.as_deref())?;
        count += 1;
    }
    if count == 0 {
        drop(out);
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::NotFound(format!(
            "no entries of {author} in this store"
        )));
    }
    let file = out.into_inner().map_err(|e| Error::Io(e.into_error()))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    Ok(count)
}

fn write_record(out: &mut impl Write, entry: &[u8], payload: Option<&[u8]>) -> Result<()> {
    let len =
        |n: usize| u32::try_from(n).map_err(|_| Error::InvalidInput("record too long".into()));
    out.write_all(&len(entry.len())?.to_be_bytes())?;
    out.write_all(entry)?;
    match payload {
        None => out.write_all(&[0])?,
        Some(p) => {
            out.write_all(&[1])?;
            out.write_all(&len(p.len())?.to_be_bytes())?;
            out.write_all(p)?;
        }
    }
    Ok(())
}

/// Streams the records of a feed file.
pub(crate) struct FeedFileReader<R: Read> {
    input: R,
    offset: u64,
}

impl FeedFileReader<BufReader<File>> {
    /// Opens a feed file and checks its header.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Self::new(BufReader::new(File::open(path)?))
    }
}

impl<R: Read> FeedFileReader<R> {
    /// Reads and checks the header.
    pub(crate) fn new(input: R) -> Result<Self> {
        let mut r = FeedFileReader { input, offset: 0 };
        let mut magic = [0u8; 14];
        r.exact(&mut magic, "magic")?;
        if &magic != MAGIC {
            return Err(DecodeError::InvalidField {
                field: "magic",
                reason: "not a Starling feed file".into(),
            }
            .into());
        }
        let mut version = [0u8; 1];
        r.exact(&mut version, "version")?;
        if version[0] != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "feed file",
                version: version[0],
            }
            .into());
        }
        Ok(r)
    }

    fn exact(&mut self, buf: &mut [u8], field: &'static str) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(DecodeError::Truncated {
                        field,
                        needed: buf.len() - filled,
                    }
                    .into());
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, field: &'static str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b, field)?;
        Ok(u32::from_be_bytes(b))
    }

    /// Whether the input is at its end (checked by reading one byte).
    fn at_end(&mut self, first: &mut [u8; 1]) -> Result<bool> {
        loop {
            match self.input.read(first) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next record, or `None` at a clean end of file.
    pub(crate) fn next_record(&mut self) -> Result<Option<IncomingEntry>> {
        let mut first = [0u8; 1];
        if self.at_end(&mut first)? {
            return Ok(None);
        }
        let mut rest = [0u8; 3];
        self.exact(&mut rest, "entry length")?;
        let entry_len = u32::from_be_bytes([first[0], rest[0], rest[1], rest[2]]);
        if entry_len == 0 || entry_len > MAX_ENTRY_RECORD {
            return Err(DecodeError::TooLong {
                field: "entry record",
                len: entry_len as usize,
                max: MAX_ENTRY_RECORD as usize,
            }
            .into());
        }
        let mut entry_bytes = vec![0u8; entry_len as usize];
        self.exact(&mut entry_bytes, "entry")?;
        let mut flag = [0u8; 1];
        self.exact(&mut flag, "payload flag")?;
        let payload = match flag[0] {
            0 => None,
            1 => {
                let len = self.u32("payload length")?;
                if len > MAX_PAYLOAD_LEN {
                    return Err(DecodeError::TooLong {
                        field: "payload",
                        len: len as usize,
                        max: MAX_PAYLOAD_LEN as usize,
                    }
                    .into());
                }
                let mut p = vec![0u8; len as usize];
                self.exact(&mut p, "payload")?;
                Some(p)
            }
            f => {
                return Err(DecodeError::BadFlag {
                    field: "payload flag",
                    flag: f,
                }
                .into());
            }
        };
        Ok(Some(IncomingEntry {
            entry_bytes,
            payload,
        }))
    }

    /// Up to `n` records; an empty vector at the end of the file.
    pub(crate) fn chunk(&mut self, n: usize) -> Result<Vec<IncomingEntry>> {
        let mut out = Vec::with_capacity(n.min(1024));
        while out.len() < n {
            match self.next_record()? {
                Some(r) => out.push(r),
                None => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        for (e, p) in records {
            write_record(&mut out, e, *p).expect("vec write");
        }
        out
    }

    #[test]
    fn records_round_trip() -> Result<()> {
        let bytes = file(&[(&[1; 149], Some(b"hi")), (&[2; 181], None)]);
        let mut r = FeedFileReader::new(bytes.as_slice())?;
        let all = r.chunk(10)?;
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].payload.as_deref(), Some(&b"hi"[..]));
        assert_eq!(all[1].payload, None);
        assert!(r.chunk(10)?.is_empty());
        Ok(())
    }

    #[test]
    fn corrupt_files_are_typed_errors() {
        let good = file(&[(&[1; 149], Some(b"hi"))]);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        cases.push(b"NOT-A-FEED-FILE".to_vec());
        let mut v2 = good.clone();
        v2[14] = 2;
        cases.push(v2);
        for cut in 16..good.len() {
            cases.push(good[..cut].to_vec());
        }
        let mut huge = MAGIC.to_vec();
        huge.push(VERSION);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        cases.push(huge);
        let mut flag = file(&[(&[1; 149], None)]);
        let last = flag.len() - 1;
        flag[last] = 7;
        cases.push(flag);
        for (i, case) in cases.iter().enumerate() {
            let result = FeedFileReader::new(case.as_slice()).and_then(|mut r| r.chunk(10));
            assert!(
                matches!(result, Err(Error::Decode(_))),
                "case {i}: {result:?}"
            );
        }
    }
}
