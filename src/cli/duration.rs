//! Durations on the command line: `90s`, `15m`, `12h`, `30d`, `250ms`.

use std::time::Duration;

/// Parses a number followed by `ms`, `s`, `m`, `h` or `d`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{s:?} needs a unit: ms, s, m, h or d"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} must start with a whole number"))?;
    let unit_secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!("unknown unit {unit:?} in {s:?}: use ms, s, m, h or d"));
        }
    };
    n.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse("30").is_err());
        assert!(parse("d").is_err());
        assert!(parse("3w").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }
}
