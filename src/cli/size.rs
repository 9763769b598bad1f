//! Sizes on the command line: `1048576`, `64KiB`, `256MiB`, `1GiB` (binary) or `500MB` (decimal).

/// Parses a whole number of bytes, optionally followed by a unit.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} must start with a whole number of bytes"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("1048576"), Ok(1 << 20));
        assert_eq!(parse("64KiB"), Ok(64 << 10));
        assert_eq!(parse("256MiB"), Ok(256 << 20));
        assert_eq!(parse("2GB"), Ok(2_000_000_000));
        assert!(parse("MiB").is_err());
        assert!(parse("5 parsecs").is_err());
        assert!(parse("99999999999TiB").is_err());
    }
}
