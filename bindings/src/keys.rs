//! The at-rest key, supplied by the app from the platform's secure storage.

use std::sync::Arc;

use starling_core::identity::at_rest::{AtRestKey, AtRestKeyProvider as CoreKeyProvider};
use zeroize::Zeroizing;

use crate::error::StarlingError;

/// Supplies the 32-byte key that seals this device's secrets (the
/// identity's root seed) on disk. The app implements it on top of the
/// platform's secure storage and passes it to `StarlingNode.open`.
///
/// Contract:
/// * Return the **same 32 bytes every time** for the same data directory:
///   a different key cannot open what was sealed before (the user would have
///   to restore from the recovery phrase).
/// * Create the key once, from a secure random source (for example
///   `generateAtRestKey()`), never from a password or device id.
/// * If the key is not available right now (device locked, biometric prompt
///   cancelled, Keystore error), throw `StarlingException.Locked` (Kotlin) /
///   `StarlingError.Locked` (Swift) with a short reason. Never return a
///   placeholder key.
/// * It is called on a background thread, only when a secret is needed
///   (creating or restoring an identity, the first signature after opening,
///   showing the recovery phrase). It may block, e.g. on a biometric prompt.
///
/// Android: keep a non-exportable AES-256-GCM key in the `AndroidKeyStore`,
/// and store this 32-byte key encrypted with it (e.g. in a private file);
/// decrypt it here. iOS: store it as a Keychain item
/// (`kSecClassGenericPassword`, `kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly`).
#[uniffi::export(foreign)]
pub trait AtRestKeyProvider: Send + Sync {
    /// Returns the 32-byte at-rest key. Never log it.
    fn at_rest_key(&self) -> Result<Vec<u8>, StarlingError>;
}

/// Generates a fresh random at-rest key (32 bytes from the operating
/// system's secure random generator), for an app to create once on first
/// launch and then keep in secure storage.
#[uniffi::export]
pub fn generate_at_rest_key() -> Result<Vec<u8>, StarlingError> {
    let key = AtRestKey::random()?;
    Ok(key.as_bytes().to_vec())
}

/// Adapts the app's provider to the core's trait.
pub(crate) struct KeyBridge(pub(crate) Arc<dyn AtRestKeyProvider>);

impl CoreKeyProvider for KeyBridge {
    fn at_rest_key(&self) -> starling_core::Result<AtRestKey> {
        use starling_core::Error;
        match self.0.at_rest_key() {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                AtRestKey::from_slice(&bytes).map_err(|e| {
                    Error::InvalidInput(format!(
                        "the app's AtRestKeyProvider returned a bad key: {e}"
                    ))
                })
            }
            Err(StarlingError::Locked { detail }) => Err(Error::Locked(detail)),
            Err(other) => Err(Error::Locked(format!(
                "the app's AtRestKeyProvider failed: {other}"
            ))),
        }
    }
}
