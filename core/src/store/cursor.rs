//! Opaque pagination cursors and page types.
//!
//! Lists are ordered newest first by `(timestamp, entry id)`; the id breaks
//! ties so every entry has exactly one position and no page repeats or skips
//! an item. A cursor names the last item of a page; the next page holds the
//! items strictly before it. Apps must treat the string as opaque: its layout
//! (`c1` + 16 hex digits of timestamp + 64 hex digits of entry id) may change.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::identity::id::EntryId;

/// Largest page an app may ask for.
pub const MAX_PAGE: u32 = 200;

const PREFIX: &str = "c1";
const LEN: usize = PREFIX.len() + 16 + 64;

/// An opaque position in a newest-first list, returned as [`Page::next`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// The cursor just after the item `(timestamp_ms, id)`.
    pub(crate) fn after(timestamp_ms: u64, id: &EntryId) -> Self {
        let mut s = String::with_capacity(LEN);
        s.push_str(PREFIX);
        s.push_str(&format!("{timestamp_ms:016x}"));
        for b in id.as_bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        Cursor(s)
    }

    /// The `(timestamp, entry id)` this cursor points after.
    pub(crate) fn position(&self) -> (u64, EntryId) {
        // Invariant: a `Cursor` only exists after passing `decode`.
        decode(&self.0).unwrap_or((0, EntryId::from_bytes([0; 32])))
    }

    /// The cursor's text, for passing back to the app.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn decode(s: &str) -> Result<(u64, EntryId)> {
    let bad = || Error::InvalidInput("malformed page cursor".into());
    let rest = s.strip_prefix(PREFIX).ok_or_else(bad)?;
    if s.len() != LEN
        || !rest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    let ts = u64::from_str_radix(&rest[..16], 16).map_err(|_| bad())?;
    let mut id = [0u8; 32];
    for (i, out) in id.iter_mut().enumerate() {
        let pair = &rest[16 + 2 * i..18 + 2 * i];
        *out = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok((ts, EntryId::from_bytes(id)))
}

impl FromStr for Cursor {
    type Err = Error;

    /// Parses a cursor previously returned by a page; anything else is
    /// [`Error::InvalidInput`].
    fn from_str(s: &str) -> Result<Self> {
        decode(s)?;
        Ok(Cursor(s.to_owned()))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({})", self.0)
    }
}

/// Which page of a newest-first list to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items at most (1..=200).
    pub limit: u32,
    /// Start strictly after this cursor (from a previous page's `next`);
    /// `None` for the newest items.
    pub before: Option<Cursor>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit,
            before: None,
        }
    }

    /// Checks the limit and returns `(limit, before_ts, before_id)` for SQL.
    pub(crate) fn bounds(&self) -> Result<(u32, i64, [u8; 32])> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(Error::InvalidInput(format!(
                "page limit must be 1..={MAX_PAGE}, got {}",
                self.limit
            )));
        }
        Ok(match &self.before {
            None => (self.limit, i64::MAX, [0xff; 32]),
            Some(c) => {
                let (ts, id) = c.position();
                (
                    self.limit,
                    i64::try_from(ts).unwrap_or(i64::MAX),
                    *id.as_bytes(),
                )
            }
        })
    }
}

impl Default for PageRequest {
    /// The newest 50 items.
    fn default() -> Self {
        PageRequest::first(50)
    }
}

/// One page of a newest-first list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass this as [`PageRequest::before`] for the next (older) page;
    /// `None` when this page is the last.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched items: the extra one only tells
    /// whether there is a next page.
    pub(crate) fn from_overfetch(
        mut items: Vec<T>,
        limit: u32,
        key: impl Fn(&T) -> (u64, EntryId),
    ) -> Self {
        let limit = limit as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| {
                let (ts, id) = key(last);
                Cursor::after(ts, &id)
            })
        } else {
            None
        };
        Page { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_invalid_input() {
        let c = Cursor::after(1_700_000_000_000, &EntryId::from_bytes([0xab; 32]));
        let parsed: Cursor = c.to_string().parse().expect("round trip");
        assert_eq!(
            parsed.position(),
            (1_700_000_000_000, EntryId::from_bytes([0xab; 32]))
        );
        let s = c.to_string();
        for bad in [
            "",
            "c1",
            "zz",
            &s[..s.len() - 1],
            &format!("{s}0"),
            &s.replace('a', "A"),
            &format!("c2{}", &s[2..]),
        ] {
            assert!(
                matches!(bad.parse::<Cursor>(), Err(Error::InvalidInput(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "c1é".parse::<Cursor>(),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn page_limits_are_checked() {
        assert!(PageRequest::first(0).bounds().is_err());
        assert!(PageRequest::first(201).bounds().is_err());
        assert!(PageRequest::first(200).bounds().is_ok());
    }
}
