//! The store of skipped message keys: keys derived for messages that have not
//! arrived yet, so out-of-order messages can still be decrypted.
//!
//! Guarantees: the store never holds more than [`MAX_SKIPPED`] keys (oldest
//! evicted first), keys expire after [`SKIPPED_MAX_AGE_MS`] or
//! [`SKIPPED_MAX_STEPS`] DH ratchet steps, and each key is handed out at
//! most once (it is removed when used).

use std::collections::VecDeque;

use super::primitives::{Key32, SecretBuf, read_key};
use crate::encoding::Reader;

use super::error::MResult;

/// Most skipped keys one session (or one group sender chain) keeps.
pub const MAX_SKIPPED: usize = 2000;
/// Skipped keys older than this are deleted (30 days).
pub const SKIPPED_MAX_AGE_MS: u64 = 30 * 24 * 3600 * 1000;
/// Skipped keys are deleted once the session has taken this many DH ratchet
/// steps since they were stored: a message that late is treated as lost.
pub const SKIPPED_MAX_STEPS: u32 = 20;

/// One skipped key: which chain (by its header key), which message number.
#[derive(Clone, Debug)]
pub(crate) struct Skipped {
    pub(crate) hk: Key32,
    pub(crate) n: u32,
    pub(crate) mk: Key32,
    pub(crate) created_ms: u64,
    pub(crate) step: u32,
}

/// The bounded skipped-key store, oldest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct SkippedKeys {
    entries: VecDeque<Skipped>,
}

impl SkippedKeys {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a key, evicting the oldest beyond [`MAX_SKIPPED`].
    pub(crate) fn push(&mut self, s: Skipped) {
        self.entries.push_back(s);
        while self.entries.len() > MAX_SKIPPED {
            self.entries.pop_front();
        }
    }

    /// The distinct header keys with keys stored, to try on a header.
    pub(crate) fn header_keys(&self) -> Vec<Key32> {
        let mut out: Vec<Key32> = Vec::new();
        for e in &self.entries {
            if !out.contains(&e.hk) {
                out.push(e.hk.clone());
            }
        }
        out
    }

    /// Removes and returns the key for (`hk`, `n`).
    pub(crate) fn take(&mut self, hk: &Key32, n: u32) -> Option<Key32> {
        let pos = self.entries.iter().position(|e| &e.hk == hk && e.n == n)?;
        self.entries.remove(pos).map(|e| e.mk)
    }

    /// Drops keys that are too old by time or by ratchet steps.
    pub(crate) fn expire(&mut self, now_ms: u64, step: u32) {
        self.entries.retain(|e| {
            now_ms.saturating_sub(e.created_ms) <= SKIPPED_MAX_AGE_MS
                && step.saturating_sub(e.step) <= SKIPPED_MAX_STEPS
        });
    }

    pub(crate) fn write(&self, w: &mut SecretBuf) {
        w.u32(self.entries.len() as u32);
        for e in &self.entries {
            w.bytes(e.hk.bytes())
                .u32(e.n)
                .bytes(e.mk.bytes())
                .u64(e.created_ms)
                .u32(e.step);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> MResult<Self> {
        let count = r.u32("skipped count")? as usize;
        if count > MAX_SKIPPED {
            return Err(crate::encoding::DecodeError::TooLong {
                field: "skipped keys",
                len: count,
                max: MAX_SKIPPED,
            }
            .into());
        }
        let mut entries = VecDeque::with_capacity(count);
        for _ in 0..count {
            entries.push_back(Skipped {
                hk: read_key(r, "skipped hk")?,
                n: r.u32("skipped n")?,
                mk: read_key(r, "skipped mk")?,
                created_ms: r.u64("skipped time")?,
                step: r.u32("skipped step")?,
            });
        }
        Ok(SkippedKeys { entries })
    }
}
