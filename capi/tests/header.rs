//! `include/malt.h` must be what cbindgen generates from the crate today,
//! with the version macros and made strict C89 and C++98 by [`portable`].

use std::path::{Path, PathBuf};

/// `MALT_VERSION_MAJOR`, `_MINOR`, `_PATCH` and `_STRING` for the crate
/// version `version` ("0.1.0", or "1.2.3-rc.1": the patch number is its
/// leading digits). The `malt_init()` macro of the trailer passes the first
/// three to `malt_init_version`.
fn version_macros(version: &str) -> String {
    let mut parts = version.splitn(3, '.');
    let mut number = |what: &str| -> u32 {
        let part = parts.next().unwrap_or_default();
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("no {what} number in the crate version {version:?}"))
    };
    let (major, minor, patch) = (number("major"), number("minor"), number("patch"));
    format!(
        "\n/* The version of malt this header describes (malt_init() checks the library's). */\n\
         #define MALT_VERSION_MAJOR {major}\n\
         #define MALT_VERSION_MINOR {minor}\n\
         #define MALT_VERSION_PATCH {patch}\n\
         #define MALT_VERSION_STRING \"{version}\""
    )
}

/// Rewrites what cbindgen writes that strict C89 or C++98 rejects: `//`
/// comments (cbindgen writes some after `#endif` and `}` whatever its
/// documentation style) become `/* */` comments, and the comma after the
/// last enumerator of an enum is removed.
fn portable(header: &str) -> String {
    let lines: Vec<&str> = header.lines().collect();
    let mut out = String::with_capacity(header.len() + 64);
    let mut in_comment = false;
    for (i, line) in lines.iter().enumerate() {
        let (code, comment) = split_line_comment(line, &mut in_comment);
        let mut code = code.to_string();
        if comment.is_none() && code.trim_end().ends_with(',') {
            let next = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty());
            if next.is_some_and(|l| l.starts_with('}')) {
                code = code.trim_end().trim_end_matches(',').to_string();
            }
        }
        match comment.map(str::trim) {
            None => out.push_str(&code),
            Some("") => out.push_str(code.trim_end()),
            Some(text) => out.push_str(&format!("{code}/* {text} */")),
        }
        out.push('\n');
    }
    out
}

/// Splits `line` at a `//` comment that is outside string and character
/// literals and outside `/* */` comments (`in_comment` carries whether one
/// is open from line to line): the code before it, and the comment text.
fn split_line_comment<'a>(line: &'a str, in_comment: &mut bool) -> (&'a str, Option<&'a str>) {
    let bytes = line.as_bytes();
    let mut quote = None;
    let mut i = 0;
    while i < bytes.len() {
        let (c, next) = (bytes[i], bytes.get(i + 1).copied());
        if *in_comment {
            if c == b'*' && next == Some(b'/') {
                *in_comment = false;
                i += 1;
            }
        } else if let Some(q) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
        } else if c == b'"' || c == b'\'' {
            quote = Some(c);
        } else if c == b'/' && next == Some(b'*') {
            *in_comment = true;
            i += 1;
        } else if c == b'/' && next == Some(b'/') {
            return (&line[..i], Some(&line[i + 2..]));
        }
        i += 1;
    }
    (line, None)
}

fn generate(crate_dir: &Path) -> String {
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("capi/cbindgen.toml: {e}"));
    config.after_includes = Some(version_macros(env!("CARGO_PKG_VERSION")));
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen could not generate the header: {e}"));
    let mut out = Vec::new();
    bindings.write(&mut out);
    portable(&String::from_utf8(out).expect("the header is UTF-8"))
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
             or capi/cbindgen.toml changed. Regenerate it with `MALT_UPDATE_HEADER=1 cargo test \
             -p malt-capi --test header` and commit the result."
        );
    }
    // The generated text declares what C programs rely on.
    let version = env!("CARGO_PKG_VERSION");
    for needle in [
        "malt_status malt_init(void);",
        "const char *malt_last_error(void);",
        "typedef struct malt_vector malt_vector;",
        "#define MALT_UDF_AVG 0",
        &format!("#define MALT_VERSION_STRING \"{version}\""),
        "#define malt_init() malt_init_version(MALT_VERSION_MAJOR, MALT_VERSION_MINOR, \
         MALT_VERSION_PATCH)",
    ] {
        assert!(fresh.contains(needle), "the header lacks {needle:?}");
    }
    // The check macro follows the declarations, inside the include guard.
    let declared = fresh
        .find("malt_init(void);")
        .expect("malt_init is declared");
    let defined = fresh
        .find("#define malt_init()")
        .expect("malt_init() is defined");
    assert!(
        declared < defined,
        "#define malt_init() precedes the declaration of malt_init"
    );
    assert!(
        fresh.trim_end().ends_with("#endif /* MALT_H */"),
        "the include guard does not close the header"
    );
    let mut in_comment = false;
    for (n, line) in fresh.lines().enumerate() {
        let (_, comment) = split_line_comment(line, &mut in_comment);
        assert!(comment.is_none(), "line {} has a // comment: {line}", n + 1);
    }
}

#[test]
fn version_macros_follow_the_crate_version() {
    let text = version_macros("12.3.45");
    for line in [
        "#define MALT_VERSION_MAJOR 12\n",
        "#define MALT_VERSION_MINOR 3\n",
        "#define MALT_VERSION_PATCH 45\n",
    ] {
        assert!(text.contains(line), "{line:?} is not in {text:?}");
    }
    assert!(text.ends_with("#define MALT_VERSION_STRING \"12.3.45\""));
    let text = version_macros("1.0.2-rc.1+build.5");
    assert!(text.contains("#define MALT_VERSION_PATCH 2\n"));
    assert!(text.contains("#define MALT_VERSION_STRING \"1.0.2-rc.1+build.5\""));
}

#[test]
#[should_panic(expected = "no minor number")]
fn version_macros_reject_a_version_without_numbers() {
    version_macros("1.x.0");
}

#[test]
fn portable_removes_the_comma_after_the_last_enumerator() {
    let raw = "typedef enum e {\n    A = 0,\n    /* The last. */\n    B = 1,\n} e;\n";
    assert_eq!(
        portable(raw),
        "typedef enum e {\n    A = 0,\n    /* The last. */\n    B = 1\n} e;\n"
    );
    // Argument lists and blank lines before the brace.
    let raw = "int f(int a,\n      int b);\nenum g { X,\n\n};\n";
    assert_eq!(
        portable(raw),
        "int f(int a,\n      int b);\nenum g { X\n\n};\n"
    );
}

#[test]
fn portable_turns_line_comments_into_block_comments() {
    let raw = "#ifdef __cplusplus\nextern \"C\" {\n#endif // __cplusplus\n\
               }  // extern \"C\"\n#endif  // __cplusplus\n// Doc.\n//\nint x;\n";
    assert_eq!(
        portable(raw),
        "#ifdef __cplusplus\nextern \"C\" {\n#endif /* __cplusplus */\n\
         }  /* extern \"C\" */\n#endif  /* __cplusplus */\n/* Doc. */\n\nint x;\n"
    );
}

#[test]
fn portable_leaves_slashes_in_comments_and_strings_alone() {
    let raw = "/* see http://example.org\n * and a//b */\n\
               #define URL \"http://example.org\"\n#define SLASH '/' /* // */\n";
    assert_eq!(portable(raw), raw);
    let mut in_comment = false;
    for line in raw.lines() {
        assert_eq!(split_line_comment(line, &mut in_comment).1, None, "{line}");
    }
}
