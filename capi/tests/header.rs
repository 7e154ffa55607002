//! `include/malt.h` must be what cbindgen generates from the crate today.

use std::path::{Path, PathBuf};

fn generate(crate_dir: &Path) -> String {
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("capi/cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen could not generate the header: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn checked_in_header_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../include/malt.h");
    let fresh = generate(&crate_dir);
    if std::env::var_os("MALT_UPDATE_HEADER").is_some() {
        std::fs::write(&header, &fresh).expect("write include/malt.h");
    }
    let current = std::fs::read_to_string(&header).unwrap_or_default();
    if current != fresh {
        let line = current
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or(current.lines().count().min(fresh.lines().count()), |i| i)
            + 1;
        panic!(
            "include/malt.h is stale (first difference at line {line}): the C API in capi/src \
             changed. Regenerate it with `MALT_UPDATE_HEADER=1 cargo test -p malt-capi --test \
             header` and commit the result."
        );
    }
    // The generated text declares what C programs rely on.
    for needle in [
        "malt_status malt_init(void);",
        "const char *malt_last_error(void);",
        "typedef struct malt_vector malt_vector;",
        "#define MALT_UDF_AVG 0",
    ] {
        assert!(fresh.contains(needle), "the header lacks {needle:?}");
    }
}
