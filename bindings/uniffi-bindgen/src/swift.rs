//! `uniffi-bindgen-swift`: generates the Swift sources, the C header and an
//! XCFramework-compatible modulemap for `libstarling_ffi`, from the workspace's
//! pinned uniffi version.
//!
//! Typical use:
//! `uniffi-bindgen-swift --swift-sources --headers --modulemap --xcframework --module-name StarlingFFI LIB OUT`

fn main() {
    uniffi::uniffi_bindgen_swift()
}
