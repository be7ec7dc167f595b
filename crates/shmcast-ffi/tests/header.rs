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
