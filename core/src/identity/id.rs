//! Printable, typo-resistant ids: author keys, entry ids and blob ids.
//!
//! Each is 32 bytes shown as bech32m (BIP-350) with its own human-readable
//! prefix, so a mistyped or truncated id is caught by the checksum and an
//! entry id pasted where an author id belongs is refused by its prefix.

use std::fmt;
use std::str::FromStr;

use bech32::{Bech32m, Hrp};

use crate::error::Error;

macro_rules! printable_id {
    ($(#[$doc:meta])* $name:ident, $hrp:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The human-readable prefix of the printable form.
            pub const PREFIX: &'static str = $hrp;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Parses raw bytes from a slice; fails unless it holds exactly 32.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
                <[u8; 32]>::try_from(bytes).map(Self).map_err(|_| Error::InvalidId {
                    kind: $kind,
                    input: format!("{} raw bytes", bytes.len()),
                    reason: "expected 32 bytes".into(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let hrp = Hrp::parse_unchecked($hrp);
                bech32::encode_to_fmt::<Bech32m, _>(f, hrp, &self.0).map_err(|_| fmt::Error)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                parse_id(s.trim(), $hrp, $kind).map(Self)
            }
        }
    };
}

printable_id!(
    /// A feed author: the Ed25519 public key that signs the feed, shown as `stl1…`.
    AuthorId,
    "stl",
    "author"
);
printable_id!(
    /// An entry: the BLAKE3 hash of its exact encoded bytes, shown as `stle1…`.
    EntryId,
    "stle",
    "entry"
);
printable_id!(
    /// A blob (attachment): the BLAKE3 hash of its bytes, shown as `stlb1…`.
    BlobId,
    "stlb",
    "blob"
);

fn parse_id(s: &str, expected_hrp: &'static str, kind: &'static str) -> Result<[u8; 32], Error> {
    let invalid = |reason: String| Error::InvalidId {
        kind,
        input: s.chars().take(120).collect(),
        reason,
    };
    let checked = bech32::primitives::decode::CheckedHrpstring::new::<Bech32m>(s).map_err(|e| {
        invalid(format!(
            "not a valid bech32m string ({e}); check for a typo"
        ))
    })?;
    let hrp = checked.hrp();
    if hrp.as_str() != expected_hrp {
        return Err(invalid(format!(
            "prefix `{}1` is not an {kind} id (those start with `{expected_hrp}1`)",
            hrp.as_str()
        )));
    }
    let data: Vec<u8> = checked.byte_iter().collect();
    <[u8; 32]>::try_from(data.as_slice())
        .map_err(|_| invalid(format!("holds {} bytes, expected 32", data.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = AuthorId([7; 32]);
        let s = id.to_string();
        assert!(s.starts_with("stl1"));
        assert_eq!(s.parse::<AuthorId>().unwrap(), id);
    }

    #[test]
    fn a_typo_is_caught() {
        let s = EntryId([9; 32]).to_string();
        let mut chars: Vec<char> = s.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            typo.parse::<EntryId>(),
            Err(Error::InvalidId { .. })
        ));
    }

    #[test]
    fn the_wrong_kind_is_refused() {
        let s = EntryId([1; 32]).to_string();
        let err = s.parse::<AuthorId>().unwrap_err().to_string();
        assert!(err.contains("not an author id"), "{err}");
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for s in ["", "stl1", "hello", "stl1qqqqqq", "\u{1F600}"] {
            assert!(s.parse::<AuthorId>().is_err());
        }
    }
}
