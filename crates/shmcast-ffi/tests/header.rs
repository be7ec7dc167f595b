//! `include/shmcast.h` is what cbindgen makes of this crate, to the byte:
//! a change to the ABI without the header (or the reverse) fails here.
//! `SHMCAST_BLESS=1 cargo test -p shmcast-ffi --test header` rewrites it.
//! The header does not depend on the target: checked on the host only.
#![cfg(not(windows))]

use std::path::Path;

#[test]
fn the_checked_in_header_is_what_cbindgen_generates() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not read the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("../../include/shmcast.h");
    if std::env::var_os("SHMCAST_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let first = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "include/shmcast.h differs from what cbindgen generates (first at line {}):\n  checked in: {:?}\n  generated:  {:?}\n\
             Regenerate it with SHMCAST_BLESS=1 cargo test -p shmcast-ffi --test header, and review the diff.",
            first + 1,
            checked_in.lines().nth(first).unwrap_or("<end>"),
            generated.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

/// The C# binding's `Status` enum (bindings/csharp/src/Native.cs) has every
/// status of the header, with the same value: C# turns codes into
/// exceptions by it, so a code added or renumbered in one place only would
/// become the wrong exception.
#[test]
fn the_csharp_status_enum_is_the_headers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let header = std::fs::read_to_string(root.join("include/shmcast.h")).unwrap();
    let from_c: Vec<(String, i32)> = header
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().trim_end_matches(',').split_once(" = ")?;
            let rest = name
                .strip_prefix("SHMCAST_ERROR_")
                .or(name.strip_prefix("SHMCAST_").filter(|n| *n == "OK"))?;
            let pascal: String = rest
                .split('_')
                .map(|w| w[..1].to_owned() + &w[1..].to_lowercase())
                .collect();
            Some((pascal, value.parse().ok()?))
        })
        .collect();
    let native = std::fs::read_to_string(root.join("bindings/csharp/src/Native.cs")).unwrap();
    let body = native
        .split_once("public enum Status")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .expect("Native.cs has a Status enum");
    let from_cs: Vec<(String, i32)> = body
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().trim_end_matches(',').split_once(" = ")?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect();
    assert!(
        from_c.len() > 20,
        "the header's statuses were not found: {from_c:?}"
    );
    assert_eq!(
        from_cs, from_c,
        "C# Status (left) against the header (right)"
    );
}
