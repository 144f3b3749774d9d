//! Byte sizes written the way people write them: `"64MiB"`, `"1.5 GiB"`, `"512kB"`.
//!
//! Every binding accepts capacities as a number of bytes or as such a string, and parses
//! them here, so `"64MB"` means the same in Python, Node and C.

use crate::error::{Error, Result};

/// Parses a byte size: a non-negative number (decimals allowed) and an optional unit.
/// Units are case-insensitive: `B`; `KB`, `MB`, `GB`, `TB` (powers of 1000); `KiB`,
/// `MiB`, `GiB`, `TiB` and the short `K`, `M`, `G`, `T` (powers of 1024).
///
/// # Errors
///
/// [`crate::ErrorKind::InvalidArgument`] for anything else, or a size over `usize::MAX`.
pub fn parse_size(text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::invalid(format!(
            "not a byte size: {text:?} (try \"64MiB\" or a number of bytes)"
        ))
    };
    if num.is_empty() {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = (n * mult).round();
    if !bytes.is_finite() || bytes > usize::MAX as f64 {
        return Err(Error::invalid(format!("byte size {text:?} is too large")));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 mib").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("512kB").unwrap(), 512_000);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size(" 7 B ").unwrap(), 7);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "MiB",
            "-1",
            "12 parsecs",
            "1.2.3MB",
            "99999999999999999999999TiB",
        ] {
            assert_eq!(
                parse_size(bad).unwrap_err().kind(),
                crate::ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }
}
