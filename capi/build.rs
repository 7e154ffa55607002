//! The shared library is installed as libmalt.so: record that as its soname
//! so that programs linked with -lmalt look for it under that name.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "freebsd" || os == "netbsd" || os == "openbsd" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmalt.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
