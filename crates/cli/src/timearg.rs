//! Time and duration arguments: RFC 3339, Unix seconds, `now`, `now-1h`.

use anyhow::{anyhow, bail, Result};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses a time: RFC 3339 (`2026-01-01T00:00:00Z`), Unix seconds with an optional fraction
/// (`1767225600.5`), `now`, or `now-1h` / `now+30m`.
pub fn parse_time(s: &str) -> Result<i64> {
    parse_time_at(s, now_ms())
}

/// Like [`parse_time`] with a given "now".
pub fn parse_time_at(s: &str, now: i64) -> Result<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, d) = match rest.as_bytes()[0] {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => bail!("invalid time {s:?}: expected now, now-<duration> or now+<duration>"),
        };
        return Ok(now + sign * parse_duration(d)?);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            bail!("invalid time {s:?}");
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    tsq::formats::parse_rfc3339(s).ok_or_else(|| {
        anyhow!("invalid time {s:?}: expected RFC 3339 (2026-01-01T00:00:00Z), Unix seconds, now or now-1h")
    })
}

/// Parses a duration (`5m`, `1h30m`, `90s`, or plain seconds `60`), in ms.
pub fn parse_duration(s: &str) -> Result<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs > 0.0 {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    tsq::parser::parse_duration(s).map_err(|e| anyhow!("invalid duration {s:?}: {}", e.message))
}

/// RFC 3339 with milliseconds.
pub fn fmt_time(ms: i64) -> String {
    tsq::formats::format_rfc3339_ms(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time_at("now", 5000).unwrap(), 5000);
        assert_eq!(parse_time_at("now-1h", 3_600_000).unwrap(), 0);
        assert_eq!(parse_time_at("now+90s", 0).unwrap(), 90_000);
        assert_eq!(parse_time_at("1.5", 0).unwrap(), 1500);
        assert_eq!(parse_time_at("1970-01-01T00:01:00Z", 0).unwrap(), 60_000);
        assert!(parse_time_at("yesterday", 0).is_err());
        assert!(parse_time_at("now*2", 0).is_err());
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert!(parse_duration("-5").is_err());
    }
}
