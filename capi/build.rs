//! The shared library is installed as libmalt.so.MAJOR.MINOR.PATCH, with the
//! links libmalt.so.MAJOR and libmalt.so (capi/install.sh): record
//! libmalt.so.MAJOR as its soname, so that programs linked with -lmalt look
//! for the major version they were linked against (for 0.x versions,
//! libmalt.so.0).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let major =
        std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    if os == "linux" || os == "freebsd" || os == "netbsd" || os == "openbsd" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmalt.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
