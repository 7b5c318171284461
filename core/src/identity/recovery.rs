//! The 24-word recovery phrase that restores an identity on a new device.
//!
//! The phrase is the standard BIP-39 encoding (English word list) of the
//! 32-byte [`RootSeed`]: 256 bits of seed plus an 8-bit checksum, 11 bits per
//! word. Unlike wallets we use the words as *entropy*, not through BIP-39's
//! PBKDF2 "seed" step, and there is no extra passphrase: the words are the
//! seed. Only 24-word phrases are accepted, because a 12-word phrase could
//! only hold 128 bits and would therefore be a different, weaker identity.
//!
//! Parsing is forgiving about layout (any whitespace, upper or lower case)
//! and precise about mistakes: it says whether the word count is wrong, which
//! word is not on the list, or that the checksum does not match.

use std::fmt;
use std::str::FromStr;

use bip39::{Language, Mnemonic};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::identity::keys::RootSeed;

/// Number of words in a Starling recovery phrase.
pub const WORD_COUNT: usize = 24;

/// A user's 24-word recovery phrase: everything needed to restore their
/// identity. Anyone who sees it can impersonate the user.
///
/// Show it once when the identity is created, ask the user to write it down,
/// and never store it in the clear, log it or send it anywhere. The text is
/// wiped from memory when the value is dropped, and `Debug` prints
/// `RecoveryPhrase(<redacted>)`. Use [`RecoveryPhrase::words`] or
/// [`RecoveryPhrase::expose`] only to display it to the user.
#[derive(Clone)]
pub struct RecoveryPhrase {
    /// Normalized form: lower-case words separated by single spaces.
    phrase: Zeroizing<String>,
}

impl RecoveryPhrase {
    /// Encodes `seed` as its 24-word phrase.
    pub fn from_seed(seed: &RootSeed) -> RecoveryPhrase {
        // A 32-byte input is always valid BIP-39 entropy (128..=256 bits, a
        // multiple of 32), so this cannot fail; the seed is not untrusted data.
        #[allow(clippy::expect_used)]
        let mnemonic = Mnemonic::from_entropy_in(Language::English, seed.as_bytes())
            .expect("32 bytes is valid BIP-39 entropy");
        let mut phrase = Zeroizing::new(String::with_capacity(WORD_COUNT * 9));
        // Build the text directly into the zeroizing buffer: formatting the
        // mnemonic with `to_string()` would leave an unwiped copy on the heap.
        for (i, word) in mnemonic.words().enumerate() {
            if i > 0 {
                phrase.push(' ');
            }
            phrase.push_str(word);
        }
        // `mnemonic` zeroizes its word indices on drop (bip39 `zeroize` feature).
        RecoveryPhrase { phrase }
    }

    /// Parses a phrase typed or pasted by the user.
    ///
    /// Accepts any amount of whitespace (spaces, tabs, new lines) between
    /// words and any letter case. Fails with [`Error::Crypto`] and a message
    /// fit to show the user when the phrase does not have exactly 24 words,
    /// when a word is not on the BIP-39 English list (the message names the
    /// word and its 1-based position), or when the checksum does not match
    /// (some word is wrong or two words are swapped).
    pub fn parse(text: &str) -> Result<RecoveryPhrase> {
        let count = text.split_whitespace().count();
        if count != WORD_COUNT {
            let hint = if matches!(count, 12 | 15 | 18 | 21) {
                " (shorter phrases from other apps cannot restore a Starling identity)"
            } else {
                ""
            };
            return Err(Error::Crypto(format!(
                "a recovery phrase has {WORD_COUNT} words, this one has {count}{hint}"
            )));
        }

        let mut phrase = Zeroizing::new(String::with_capacity(text.len()));
        let mut word = Zeroizing::new(String::with_capacity(16));
        for (i, raw) in text.split_whitespace().enumerate() {
            word.clear();
            // Lower-case char by char into the zeroizing buffer, so no unwiped
            // temporary copy of a secret word is left behind.
            for c in raw.chars() {
                word.extend(c.to_lowercase());
            }
            if Language::English.find_word(&word).is_none() {
                // Echo only a bounded prefix of what was typed: enough for the
                // user to spot the typo, without dumping arbitrary input.
                let shown: String = raw.chars().take(24).collect();
                return Err(Error::Crypto(format!(
                    "unknown word \"{shown}\" at position {} of the recovery phrase; \
                     check its spelling",
                    i + 1
                )));
            }
            if i > 0 {
                phrase.push(' ');
            }
            phrase.push_str(&word);
        }

        let candidate = RecoveryPhrase { phrase };
        // Checks the checksum and that the words decode to exactly 32 bytes.
        candidate.to_seed()?;
        Ok(candidate)
    }

    /// Decodes the phrase back into the root seed it encodes.
    ///
    /// Fails with [`Error::Crypto`] if the checksum does not match; a phrase
    /// obtained from [`RecoveryPhrase::parse`] or
    /// [`RecoveryPhrase::from_seed`] always decodes.
    pub fn to_seed(&self) -> Result<RootSeed> {
        let mnemonic = Mnemonic::parse_in_normalized(Language::English, &self.phrase).map_err(
            |e| match e {
                bip39::Error::InvalidChecksum => Error::Crypto(
                    "the recovery phrase's checksum does not match: a word is wrong \
                     or two words are swapped"
                        .into(),
                ),
                bip39::Error::UnknownWord(i) => Error::Crypto(format!(
                    "unknown word at position {} of the recovery phrase",
                    i + 1
                )),
                bip39::Error::BadWordCount(n) => Error::Crypto(format!(
                    "a recovery phrase has {WORD_COUNT} words, this one has {n}"
                )),
                other => Error::Crypto(format!("invalid recovery phrase: {other}")),
            },
        )?;
        let (mut entropy, len) = mnemonic.to_entropy_array();
        let seed = if len == RootSeed::LEN {
            RootSeed::from_slice(&entropy[..len])
        } else {
            Err(Error::Crypto(format!(
                "a recovery phrase has {WORD_COUNT} words, this one has {}",
                mnemonic.word_count()
            )))
        };
        // The array returned by bip39 is a plain copy of the secret.
        entropy.zeroize();
        seed
    }

    /// The 24 words in order, for displaying them to the user (for example
    /// numbered in a grid). Do not log or store them.
    pub fn words(&self) -> Vec<&str> {
        self.phrase.split(' ').collect()
    }

    /// The whole phrase as one string, words separated by single spaces and
    /// in lower case. Only for showing it to the user or handing it to
    /// secure storage; never log it.
    pub fn expose(&self) -> &str {
        &self.phrase
    }
}

impl FromStr for RecoveryPhrase {
    type Err = Error;

    /// Same as [`RecoveryPhrase::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryPhrase(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn abandon_art() -> String {
        // BIP-39 test vector: 32 zero bytes.
        let mut s = "abandon ".repeat(23);
        s.push_str("art");
        s
    }

    #[test]
    fn round_trip() {
        let seed = RootSeed::random().unwrap();
        let phrase = RecoveryPhrase::from_seed(&seed);
        assert_eq!(phrase.words().len(), 24);
        let parsed = RecoveryPhrase::parse(phrase.expose()).unwrap();
        assert_eq!(parsed.to_seed().unwrap().as_bytes(), seed.as_bytes());
        assert_eq!(phrase.to_seed().unwrap().as_bytes(), seed.as_bytes());
    }

    #[test]
    fn matches_the_bip39_test_vector() {
        let phrase = RecoveryPhrase::from_seed(&RootSeed::from_bytes([0; 32]));
        assert_eq!(phrase.expose(), abandon_art());
        let phrase = RecoveryPhrase::from_seed(&RootSeed::from_bytes([0x7f; 32]));
        assert_eq!(
            phrase.expose(),
            "legal winner thank year wave sausage worth useful legal winner thank year \
             wave sausage worth useful legal winner thank year wave sausage worth title"
        );
    }

    #[test]
    fn tolerates_whitespace_and_case() {
        let messy = format!(
            "  \tABANDON\n{}  ",
            abandon_art().replacen("abandon", "", 1).replace(' ', "   ")
        );
        let phrase = RecoveryPhrase::parse(&messy).unwrap();
        assert_eq!(phrase.expose(), abandon_art());
        assert_eq!(phrase.to_seed().unwrap().as_bytes(), &[0; 32]);
        let parsed: RecoveryPhrase = abandon_art().to_uppercase().parse().unwrap();
        assert_eq!(parsed.expose(), abandon_art());
    }

    #[test]
    fn wrong_checksum_is_refused() {
        let bad = "abandon ".repeat(24);
        let err = RecoveryPhrase::parse(&bad).unwrap_err();
        assert!(matches!(err, Error::Crypto(_)));
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn unknown_word_is_named_with_its_position() {
        let good = abandon_art();
        let mut words: Vec<&str> = good.split(' ').collect();
        words[4] = "Xyzzy";
        let err = RecoveryPhrase::parse(&words.join(" ")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Crypto(_)));
        assert!(msg.contains("\"Xyzzy\""), "{msg}");
        assert!(msg.contains("position 5"), "{msg}");
    }

    #[test]
    fn twelve_words_are_refused() {
        // A valid 12-word BIP-39 phrase (16 zero bytes) is still refused.
        let twelve = format!("{}about", "abandon ".repeat(11));
        let err = RecoveryPhrase::parse(&twelve).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Crypto(_)));
        assert!(msg.contains("24 words") && msg.contains("has 12"), "{msg}");
    }

    #[test]
    fn other_word_counts_are_refused() {
        for n in [0, 1, 23, 25, 48] {
            let text = "abandon ".repeat(n);
            assert!(RecoveryPhrase::parse(&text).is_err(), "{n} words");
        }
    }

    #[test]
    fn non_ascii_input_is_a_typed_error() {
        let text = format!("{}\u{1F600}", "abandon ".repeat(23));
        let err = RecoveryPhrase::parse(&text).unwrap_err().to_string();
        assert!(err.contains("position 24"), "{err}");
    }
}
