//! Invites: a one-line code that lets a newcomer connect to an inviter and
//! become mutual followers, and the `/starling/invite/1` exchange behind it.
//!
//! Code: `stlinv1…`, bech32m (checksummed, so typos are caught) of
//!
//! ```text
//! 0x01 version || flags u8 (bit 0: inviter is a relay) || token (16 random bytes)
//! || peer_id_len u8 || peer id || addr_count u8 (<= 8) || (len u8 || multiaddr)*
//! ```
//!
//! Exchange (newcomer opens the stream; integers big-endian):
//!
//! ```text
//! newcomer -> inviter: 0x01 || token (16) || newcomer author id (32)
//! inviter -> newcomer: 0x00 || inviter author id (32) || flags u8   -- accepted
//!                      0x01 || len u8 || reason (UTF-8)             -- refused
//! ```
//!
//! Guarantees: the token is random (128 bits), stored only hashed, single
//! use and expiring (see [`crate::net::persist::redeem_invite`]); the
//! inviter follows the newcomer only after the token was redeemed, and the
//! newcomer follows the inviter only after an accepted answer. Author ids
//! travel only inside the Noise-encrypted connection between the two.

use std::time::Duration;

use bech32::{Bech32m, Hrp};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId};

use crate::encoding::Reader;
use crate::error::{Error, Result};
use crate::identity::id::AuthorId;

/// Stream protocol of the invite exchange.
pub const INVITE_PROTOCOL: &str = "/starling/invite/1";
/// Human-readable prefix of invite codes.
pub const INVITE_HRP: &str = "stlinv";
/// Default lifetime of an invite.
pub const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long either side waits for the other during the exchange.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

const VERSION: u8 = 0x01;
const FLAG_RELAY: u8 = 0x01;
const MAX_ADDRS: usize = 8;
const ACCEPTED: u8 = 0x00;
const REFUSED: u8 = 0x01;

/// The contents of an invite code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode {
    /// The inviter's network id.
    pub peer: PeerId,
    /// Where the inviter listens.
    pub addrs: Vec<Multiaddr>,
    /// The one-time token.
    pub token: [u8; 16],
    /// Whether the inviter runs as a relay (and will host the newcomer's feed).
    pub relay: bool,
}

impl InviteCode {
    /// The printable one-line code.
    pub fn encode(&self) -> String {
        let mut v = vec![VERSION, if self.relay { FLAG_RELAY } else { 0 }];
        v.extend_from_slice(&self.token);
        let pid = self.peer.to_bytes();
        v.push(u8::try_from(pid.len()).unwrap_or(u8::MAX));
        v.extend_from_slice(&pid);
        let addrs: Vec<Vec<u8>> = self
            .addrs
            .iter()
            .map(|a| a.to_vec())
            .filter(|a| a.len() <= usize::from(u8::MAX))
            .take(MAX_ADDRS)
            .collect();
        v.push(addrs.len() as u8);
        for a in addrs {
            v.push(a.len() as u8);
            v.extend_from_slice(&a);
        }
        match Hrp::parse(INVITE_HRP) {
            Ok(hrp) => bech32::encode::<Bech32m>(hrp, &v).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Parses a code (surrounding whitespace ignored).
    ///
    /// Errors: [`Error::InvalidInput`] for anything that is not a valid
    /// version 1 invite code.
    pub fn parse(code: &str) -> Result<Self> {
        let bad = |why: String| Error::InvalidInput(format!("not a valid invite code: {why}"));
        let checked = bech32::primitives::decode::CheckedHrpstring::new::<Bech32m>(code.trim())
            .map_err(|e| bad(format!("{e}; check for a typo")))?;
        if checked.hrp().as_str() != INVITE_HRP {
            return Err(bad(format!("it should start with `{INVITE_HRP}1`")));
        }
        let data: Vec<u8> = checked.byte_iter().collect();
        let mut r = Reader::new(&data);
        if r.u8("invite version")? != VERSION {
            return Err(bad("unknown version".into()));
        }
        let flags = r.u8("invite flags")?;
        let token: [u8; 16] = r.array("invite token")?;
        let pid_len = usize::from(r.u8("peer id length")?);
        let peer = PeerId::from_bytes(r.take(pid_len, "peer id")?)
            .map_err(|e| bad(format!("bad peer id: {e}")))?;
        let count = usize::from(r.u8("address count")?);
        if count > MAX_ADDRS {
            return Err(bad("too many addresses".into()));
        }
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(r.u8("address length")?);
            let a = Multiaddr::try_from(r.take(len, "address")?.to_vec())
                .map_err(|e| bad(format!("bad address: {e}")))?;
            addrs.push(a);
        }
        r.finish()?;
        Ok(Self {
            peer,
            addrs,
            token,
            relay: flags & FLAG_RELAY != 0,
        })
    }
}

/// What the inviter answered, and what became of the relay reservation.
#[derive(Debug, Clone)]
pub struct InviteAnswer {
    /// The inviter's author id.
    pub inviter: AuthorId,
    /// Whether the inviter is a relay that hosts our feed.
    pub relay: bool,
    /// The reservation at the inviter when it is a relay (so that others
    /// can reach this node through it): [`RelayReservation::NotRequested`]
    /// as read off the wire; filled in by
    /// [`crate::net::Network::accept_invite`].
    pub reservation: RelayReservation,
}

/// The outcome of asking a relay for a reservation (to listen through it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayReservation {
    /// The inviter is not a relay; nothing was asked.
    NotRequested,
    /// The relay accepted: this node listens at this circuit address
    /// (`/…/p2p/RELAY/p2p-circuit`), and peers reach it through it.
    Listening(Multiaddr),
    /// Every attempt failed within
    /// [`crate::net::NetConfig::relay_reservation_timeout`]. The invite
    /// itself succeeded (both sides follow each other); only reachability
    /// through the relay is missing.
    Failed(ReservationError),
}

/// A relay reservation that never succeeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the relay did not grant a reservation after {attempts} attempts: {reason}")]
pub struct ReservationError {
    /// How many reservations were asked for (with back-off between them).
    pub attempts: u32,
    /// Why the last one failed.
    pub reason: String,
}

/// Newcomer side: presents `token` and our author id, reads the answer.
pub async fn present<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    token: &[u8; 16],
    me: &AuthorId,
) -> Result<InviteAnswer> {
    let mut msg = vec![VERSION];
    msg.extend_from_slice(token);
    msg.extend_from_slice(me.as_bytes());
    stream.write_all(&msg).await?;
    stream.flush().await?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).await?;
    match status[0] {
        ACCEPTED => {
            let mut rest = [0u8; 33];
            stream.read_exact(&mut rest).await?;
            let mut a = [0u8; 32];
            a.copy_from_slice(&rest[..32]);
            let _ = stream.close().await;
            Ok(InviteAnswer {
                inviter: AuthorId::from_bytes(a),
                relay: rest[32] & FLAG_RELAY != 0,
                reservation: RelayReservation::NotRequested,
            })
        }
        REFUSED => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            let mut reason = vec![0u8; usize::from(len[0])];
            stream.read_exact(&mut reason).await?;
            Err(Error::InvalidInput(format!(
                "the inviter refused: {}",
                String::from_utf8_lossy(&reason)
            )))
        }
        other => Err(Error::InvalidInput(format!(
            "unknown invite answer {other}"
        ))),
    }
}

/// Inviter side, first half: reads the newcomer's token and author id.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<([u8; 16], AuthorId)> {
    let mut msg = [0u8; 1 + 16 + 32];
    stream.read_exact(&mut msg).await?;
    if msg[0] != VERSION {
        return Err(Error::InvalidInput("unknown invite request version".into()));
    }
    let mut token = [0u8; 16];
    token.copy_from_slice(&msg[1..17]);
    let mut a = [0u8; 32];
    a.copy_from_slice(&msg[17..]);
    Ok((token, AuthorId::from_bytes(a)))
}

/// Inviter side, second half: the answer.
pub async fn write_answer<S: AsyncWrite + Unpin>(
    stream: &mut S,
    outcome: std::result::Result<(AuthorId, bool), String>,
) -> Result<()> {
    let msg = match outcome {
        Ok((me, relay)) => {
            let mut m = vec![ACCEPTED];
            m.extend_from_slice(me.as_bytes());
            m.push(if relay { FLAG_RELAY } else { 0 });
            m
        }
        Err(reason) => {
            let mut bytes = reason.into_bytes();
            bytes.truncate(200);
            let mut m = vec![REFUSED, bytes.len() as u8];
            m.extend_from_slice(&bytes);
            m
        }
    };
    stream.write_all(&msg).await?;
    stream.flush().await?;
    let _ = stream.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_typos_are_caught() {
        let code = InviteCode {
            peer: PeerId::random(),
            addrs: vec![
                "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
                "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap(),
            ],
            token: [9; 16],
            relay: true,
        };
        let text = code.encode();
        assert!(text.starts_with("stlinv1"), "{text}");
        assert_eq!(InviteCode::parse(&format!("  {text}\n")).unwrap(), code);
        let mut typo = text.clone().into_bytes();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
        assert!(InviteCode::parse(std::str::from_utf8(&typo).unwrap()).is_err());
        assert!(InviteCode::parse("stl1qqqq").is_err());
    }
}
