//! Command-line values that `shmcast` and `shmcast-zenoh` both take: sizes
//! with K, M, G and octal modes, so that the two commands read
//! `--max-frame-len 64M` and `--mode 0640` the same way. Its own crate
//! (no dependencies) because the bridge is a workspace of its own, which
//! never compiles the `shmcast` command.

/// Bytes, optionally with K, M or G (KiB, MiB, GiB); at least 1.
pub fn size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size; give bytes, optionally with K, M or G"))?;
    let factor: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit {unit:?}; use K, M or G")),
    };
    match n.checked_mul(factor) {
        Some(0) => Err(format!(
            "{s:?} is not a usable size (must be at least 1 byte)"
        )),
        Some(n) => Ok(n),
        None => Err(format!("{s:?} is too large for this machine")),
    }
}

/// Octal permission bits (`600`, `0o644`; at most `7777`).
pub fn mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|&m| m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode like 600 or 644"))
}

/// A number as a user wrote it, short: `30`, `0.5`, `1e-300`, `1e300`
/// (Rust's `{}` spells out every digit of 1e300).
pub fn number(f: f64) -> String {
    if f == 0.0 || (1e-4..1e9).contains(&f.abs()) || !f.is_finite() {
        format!("{f}")
    } else {
        format!("{f:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size("4K"), Ok(4096));
        assert_eq!(size("2MiB"), Ok(2 << 20));
        assert!(size("0").is_err());
        assert!(size("12X").is_err());
        assert!(size("-1").is_err());
        assert!(size("99999999999999999999G").is_err());
        assert!(size("99999999999G").unwrap_err().contains("too large"));
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(mode("600"), Ok(0o600));
        assert_eq!(mode("0o644"), Ok(0o644));
        assert!(mode("888").is_err());
        assert!(mode("17777").is_err());
    }

    #[test]
    fn numbers_are_shown_short() {
        assert_eq!(number(30.0), "30");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(number(1e-300), "1e-300");
        assert_eq!(number(f64::INFINITY), "inf");
    }
}
