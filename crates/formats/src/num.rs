//! Number parsing and formatting shared by the formats.

use std::io::Write;

/// The earliest accepted timestamp: 1970-01-01T00:00:00Z.
pub const MIN_TIMESTAMP_MS: i64 = 0;
/// The latest accepted timestamp: 2262-04-11T23:47:16.854Z, the last millisecond whose
/// nanosecond count still fits an i64 (so every accepted time can also be written as Influx
/// nanoseconds).
pub const MAX_TIMESTAMP_MS: i64 = i64::MAX / 1_000_000;

/// True when `ms` is inside the accepted range (see [`MIN_TIMESTAMP_MS`], [`MAX_TIMESTAMP_MS`]).
pub fn timestamp_in_range(ms: i64) -> bool {
    (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms)
}

pub(crate) const RANGE_MSG: &str =
    "timestamp out of range; expected a time between 1970-01-01T00:00:00Z and 2262-04-11T23:47:16.854Z";

/// Parses a sample value: decimal or scientific numbers, `NaN`, `+Inf`, `-Inf` (and the
/// other spellings Rust's `f64::from_str` accepts, case-insensitive `inf`/`infinity`/`nan`).
#[inline]
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 15 {
        let mut n: u64 = 0;
        let mut all_digits = true;
        for &c in b {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                all_digits = false;
                break;
            }
            n = n * 10 + u64::from(d);
        }
        if all_digits {
            // Exact: n < 10^15 < 2^53.
            return Some(n as f64);
        }
    }
    match b.first() {
        // Rust also accepts a leading '.', but the text formats need a digit, sign, or a
        // word (NaN/Inf) to start a value; reject the oddities Go would also reject.
        Some(c)
            if c.is_ascii_digit()
                || matches!(c, b'+' | b'-' | b'.' | b'N' | b'n' | b'I' | b'i') =>
        {
            s.parse::<f64>().ok()
        }
        _ => None,
    }
}

/// Parses an integer with optional sign (no spaces, no `+` twice).
#[inline]
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d))?;
    }
    Some(if neg { -n } else { n })
}

/// Parses seconds (`1767225600`, `1767225600.123`, `1.7e9`) into milliseconds, rounding to
/// the nearest millisecond (ties away from zero). `None` when not a number or out of i64 range.
pub(crate) fn parse_seconds_to_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (neg, rest) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let int_end = rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let simple = int_end > 0
        && int_end <= 15
        && (int_end == rest.len()
            || (rest[int_end] == b'.' && rest[int_end + 1..].iter().all(u8::is_ascii_digit)));
    if simple {
        let mut secs: i64 = 0;
        for &c in &rest[..int_end] {
            secs = secs * 10 + i64::from(c - b'0');
        }
        let mut ms: i64 = 0;
        let frac = if int_end < rest.len() {
            &rest[int_end + 1..]
        } else {
            &[][..]
        };
        for i in 0..3 {
            ms = ms * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
        }
        if frac.get(3).is_some_and(|&c| c >= b'5') {
            ms += 1;
        }
        let v = secs * 1000 + ms;
        return Some(if neg { -v } else { v });
    }
    if !matches!(rest.first(), Some(c) if c.is_ascii_digit() || *c == b'.') {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    let ms = (f * 1000.0).round();
    if ms.is_finite() && ms.abs() < 9.2e18 {
        Some(ms as i64)
    } else {
        None
    }
}

/// Appends `v` so that it parses back to the same bits (NaN payloads excepted): the shortest
/// round-trip decimal, scientific notation for very large or very small magnitudes, `NaN`,
/// `+Inf`, `-Inf`, `-0`.
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        if v == 0.0 && v.is_sign_negative() {
            out.extend_from_slice(b"-0");
        } else {
            write_i64(out, v as i64);
        }
    } else if v.abs() >= 1e16 || v.abs() < 1e-5 {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Appends a decimal integer.
#[inline]
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends milliseconds as OpenMetrics seconds: `1767225600` when the milliseconds are zero,
/// else `1767225600.123` (always three fraction digits).
#[inline]
pub fn write_ms_as_seconds(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    write_i64(out, secs);
    if frac != 0 {
        out.push(b'.');
        out.push(b'0' + (frac / 100) as u8);
        out.push(b'0' + (frac / 10 % 10) as u8);
        out.push(b'0' + (frac % 10) as u8);
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with millisecond precision,
/// e.g. `2026-01-01T00:00:00.000Z`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// [`format_rfc3339_ms`] without allocating, for years 0 through 9999 (`None` for other
/// years): what writers of many timestamps (CSV output) call per row.
pub fn rfc3339_ms_bytes(ms: i64) -> Option<[u8; 24]> {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3_600_000);
    put(14, 2, rem / 60_000 % 60);
    put(17, 2, rem / 1000 % 60);
    put(20, 3, rem % 1000);
    Some(b)
}

/// Parses an RFC 3339 time (`2026-01-01T00:00:00Z`, `2026-01-01 00:00:00.5+02:00`; `T` or a
/// space; `Z` or a numeric offset; any number of fraction digits, rounded to the nearest
/// millisecond) into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let dim = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if !(1..=12).contains(&mo) || d < 1 || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let max_d = dim[(mo - 1) as usize] + i64::from(mo == 2 && leap);
    if d > max_d {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &b[start..i];
        for k in 0..3 {
            ms = ms * 10 + frac.get(k).map_or(0, |c| i64::from(c - b'0'));
        }
        if frac.get(3).is_some_and(|&c| c >= b'5') {
            ms += 1;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 60 + om;
            if *c == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + ms)
}

#[cfg(test)]
mod tests {

    #[test]
    fn rfc3339_bytes_match_the_formatter() {
        let mut seeds = vec![
            0i64,
            -1,
            1,
            999,
            86_399_999,
            -86_400_000,
            951_782_400_000,   // 2000-02-29
            4_102_444_799_999, // 2099-12-31T23:59:59.999
            253_402_300_799_999,
            253_402_300_800_000, // year 10000: not handled
            -62_167_219_200_000, // year 0
            -62_167_219_200_001, // year -1: not handled
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seeds.push((x % 600_000_000_000_000) as i64 - 300_000_000_000_000);
        }
        for ms in seeds {
            let want = format_rfc3339_ms(ms);
            match rfc3339_ms_bytes(ms) {
                Some(b) => assert_eq!(std::str::from_utf8(&b).unwrap(), want, "{ms}"),
                None => assert!(
                    !want.starts_with(|c: char| c.is_ascii_digit()) || want.len() != 24,
                    "{ms}: {want}"
                ),
            }
        }
    }

    use super::*;

    fn fmt(v: f64) -> String {
        let mut o = Vec::new();
        write_f64(&mut o, v);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn floats_format_shortest_and_parse_back() {
        assert_eq!(fmt(1.0), "1");
        assert_eq!(fmt(-0.0), "-0");
        assert_eq!(fmt(0.1), "0.1");
        assert_eq!(fmt(1e300), "1e300");
        assert_eq!(fmt(1.5e-7), "1.5e-7");
        assert_eq!(fmt(f64::INFINITY), "+Inf");
        assert_eq!(fmt(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt(f64::NAN), "NaN");
        for v in [
            0.1 + 0.2,
            1.0 / 3.0,
            123456789.123,
            1e15,
            1e16 + 2.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            assert_eq!(parse_value(&fmt(v)).unwrap().to_bits(), v.to_bits(), "{v}");
        }
    }

    #[test]
    fn seconds_to_ms() {
        assert_eq!(parse_seconds_to_ms("1767225600"), Some(1_767_225_600_000));
        assert_eq!(parse_seconds_to_ms("1767225600.5"), Some(1_767_225_600_500));
        assert_eq!(
            parse_seconds_to_ms("1767225600.1234"),
            Some(1_767_225_600_123)
        );
        assert_eq!(
            parse_seconds_to_ms("1767225600.1235"),
            Some(1_767_225_600_124)
        );
        assert_eq!(parse_seconds_to_ms("1.5e3"), Some(1_500_000));
        assert_eq!(parse_seconds_to_ms("x"), None);
        assert_eq!(parse_seconds_to_ms("1."), Some(1000));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00.25+01:00"),
            Some(1_767_225_600_250)
        );
        assert_eq!(parse_rfc3339("1970-01-01 00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None);
        assert_eq!(
            format_rfc3339_ms(1_767_225_600_250),
            "2026-01-01T00:00:00.250Z"
        );
        assert_eq!(
            format_rfc3339_ms(MAX_TIMESTAMP_MS),
            "2262-04-11T23:47:16.854Z"
        );
    }
}
