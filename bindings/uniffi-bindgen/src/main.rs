//! `uniffi-bindgen`: generates Kotlin (and Swift, Python, Ruby) bindings for
//! `libstarling_ffi`. Built from the workspace so its uniffi version is always
//! the one the library was compiled with.
//!
//! Typical use (library mode):
//! `cargo run -p uniffi-bindgen -- generate --library target/debug/libstarling_ffi.so --language kotlin --out-dir OUT`

fn main() {
    uniffi::uniffi_bindgen_main()
}
