//! The uniffi-bindgen command line, pinned to the library's uniffi version.
fn main() {
    uniffi::uniffi_bindgen_main()
}
