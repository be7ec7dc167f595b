//! The library's layers, checked: no module imports from a layer above its
//! own, and none imports from the crate root or its own directory's root
//! (`lib.rs`, `channel/mod.rs` only assemble and re-export). A frame's
//! write path then reads top to bottom: `publisher.rs` → `protocol.rs` →
//! `os`. The source files are read as text; comments are skipped.

use std::collections::BTreeMap;
use std::path::Path;

/// Crate-level modules, lowest first. A module may use only modules of a
/// lower rank.
const CRATE_LAYERS: &[(&str, u32)] = &[
    ("sync", 0),
    ("copy", 0),
    ("name", 0),
    ("seqlock", 1),
    ("os", 2),
    ("identity", 3),
    ("header", 4),
    ("lock", 4),
    ("error", 5),
    ("segment", 6),
    ("housekeeping", 7),
    ("region", 8),
    ("channel", 8),
    ("convert", 9),
    ("fuzzing", 10),
];

/// Inside `channel/`: what a frame is, where its words lie, the protocol
/// on them, the mapped channel, the two endpoints, then the reader built
/// on a subscriber.
const CHANNEL_LAYERS: &[(&str, u32)] = &[
    ("format", 0),
    ("layout", 1),
    ("protocol", 2),
    ("source", 2),
    ("mapped", 3),
    ("publisher", 4),
    ("subscriber", 4),
    ("reader", 5),
    ("fuzz", 6),
    ("loom_tests", 6),
];

/// Inside `os/`: `mod.rs` holds the shared types, each platform file
/// builds on them.
const OS_LAYERS: &[(&str, u32)] = &[("mod", 0), ("unix", 1), ("windows", 1)];

/// The first identifier of each path after `prefix` on `line`: `a` for
/// `prefix a::b`, and `a`, `b` for `prefix {a::x, b}`.
fn targets(line: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        let ident = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        if let Some(group) = rest.strip_prefix('{') {
            // A group may span lines; the caller joins a `use` into one line.
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if item_start && !c.is_whitespace() {
                    found.push(ident(&group[i..]));
                    item_start = false;
                }
            }
        } else {
            found.push(ident(rest));
        }
    }
    found.retain(|t| !t.is_empty() && t != "self");
    found
}

/// `line` without its `//` comment (a `//` inside a string literal is kept).
fn strip_comment(line: &str) -> &str {
    let (mut in_string, mut escaped) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Whether `code` starts a `use` statement, whatever its visibility.
fn starts_use(code: &str) -> bool {
    code.split_whitespace()
        .find(|word| !word.starts_with("pub"))
        .is_some_and(|word| word == "use")
}

/// The file's code, comments dropped and each `use` statement on one line.
fn code_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let code = strip_comment(line).trim();
        if code.is_empty() {
            continue;
        }
        if !pending.is_empty() || starts_use(code) {
            pending.push_str(code);
            pending.push(' ');
            if code.ends_with(';') {
                lines.push(std::mem::take(&mut pending));
            }
        } else {
            lines.push(code.to_owned());
        }
    }
    lines
}

fn rank(table: &[(&str, u32)], module: &str) -> Option<u32> {
    table.iter().find(|(m, _)| *m == module).map(|&(_, r)| r)
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let dir = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !path.is_dir() || ["channel", "os"].contains(&dir.as_str()),
            "src/{dir}/: a module directory this test does not know; give it layers"
        );
    }
    for dir in ["", "channel", "os"] {
        for entry in std::fs::read_dir(src.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                files.insert(
                    (dir.to_owned(), stem),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
    }
    let mut wrong = Vec::new();
    let mut checked = 0;
    for ((dir, stem), text) in &files {
        // lib.rs and channel/mod.rs assemble; they import nothing to use.
        if (dir.is_empty() && stem == "lib") || (dir == "channel" && stem == "mod") {
            continue;
        }
        let crate_module = if dir.is_empty() { stem.as_str() } else { dir };
        let own = rank(CRATE_LAYERS, crate_module)
            .unwrap_or_else(|| panic!("{dir}/{stem}.rs: not in CRATE_LAYERS; give it a layer"));
        let inner = match dir.as_str() {
            "channel" => Some(CHANNEL_LAYERS),
            "os" => Some(OS_LAYERS),
            _ => None,
        };
        for line in code_lines(text) {
            for target in targets(&line, "crate::") {
                checked += 1;
                match rank(CRATE_LAYERS, &target) {
                    Some(r) if target == crate_module || r < own => {}
                    Some(r) => wrong.push(format!(
                        "{dir}/{stem}.rs (layer {own}) uses crate::{target} (layer {r})"
                    )),
                    None => wrong.push(format!(
                        "{dir}/{stem}.rs uses crate::{target} from the crate root; name its module"
                    )),
                }
            }
            // `super::*` in a file's own test module means the file itself.
            if line.contains("super::*") {
                continue;
            }
            let Some(table) = inner else {
                // In a top-level file, `super::` is the crate root.
                for target in targets(&line, "super::") {
                    wrong.push(format!(
                        "{stem}.rs uses super::{target}, the crate root; name its module"
                    ));
                }
                continue;
            };
            let own_inner = rank(table, stem).unwrap_or_else(|| {
                panic!("{dir}/{stem}.rs: not in the {dir} layers; give it a layer")
            });
            for target in targets(&line, "super::") {
                checked += 1;
                let target_rank = rank(table, &target).or_else(|| {
                    // os/mod.rs's own items (OsError) are its bottom layer.
                    (dir == "os").then_some(0)
                });
                match target_rank {
                    Some(r) if r < own_inner => {}
                    Some(r) => wrong.push(format!(
                        "{dir}/{stem}.rs (layer {own_inner}) uses super::{target} (layer {r})"
                    )),
                    None => wrong.push(format!(
                        "{dir}/{stem}.rs uses super::{target} from {dir}/mod.rs; name its module"
                    )),
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} imports found: is the parser broken?"
    );
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_parser_sees_groups_and_paths() {
    assert_eq!(targets("use crate::os::Wakers;", "crate::"), ["os"]);
    assert_eq!(
        targets("use crate::{error::{A, B}, name::Name, self};", "crate::"),
        ["error", "name"]
    );
    assert_eq!(
        targets("x(crate::header::HEADER_LEN)", "crate::"),
        ["header"]
    );
    assert_eq!(
        code_lines("use a::{\n  b,\n  c,\n};\n// crate::x\nfn f() {}"),
        ["use a::{ b, c, }; ", "fn f() {}"]
    );
    assert_eq!(
        code_lines("pub(crate) use crate::{\n  a,\n};\nlet s = \"//\"; // crate::x"),
        ["pub(crate) use crate::{ a, }; ", "let s = \"//\";"]
    );
}
