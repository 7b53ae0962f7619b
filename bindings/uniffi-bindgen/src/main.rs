//! `cargo run -p uniffi-bindgen -- generate <libsessionkit_ffi.so> --language python|kotlin|swift --out-dir DIR`

fn main() {
    uniffi::uniffi_bindgen_main()
}
