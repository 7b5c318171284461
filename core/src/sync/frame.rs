//! Length-prefixed frames over any byte stream: a u32 big-endian body
//! length, then the body.
//!
//! Guarantees: a frame longer than the receiver's maximum is refused from
//! its 4-byte header, before any of its body is read or allocated.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::sync::error::SyncError;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;
/// Smallest maximum frame size a peer may announce: one entry with a
/// maximal payload (about 16.6 KB) must always fit.
pub const MIN_MAX_FRAME: usize = 32 * 1024;
/// Default maximum frame size.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024;

/// Reads one frame body. `Ok(None)` on a clean end of stream between
/// frames; a stream that ends inside a frame is an i/o error.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, SyncError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = r.read(&mut header[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(SyncError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        filled += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(SyncError::Malformed("empty frame".into()));
    }
    if len > max {
        return Err(SyncError::Oversized { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes one frame (header and body in one write) and flushes it.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
) -> Result<usize, SyncError> {
    let len = u32::try_from(body.len())
        .map_err(|_| SyncError::ProtocolViolation("frame too large to send".into()))?;
    let mut buf = Vec::with_capacity(HEADER_LEN + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(buf.len())
}
