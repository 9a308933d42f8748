//! Format detection from the file name and the first bytes.

use crate::Format;

/// Guesses the format of an input from its file name (extension) and content.
///
/// Extensions decide first: `.om`/`.openmetrics` → OpenMetrics, `.prom` → Prometheus (or
/// OpenMetrics when the input ends with `# EOF`), `.lp`/`.influx`/`.line` → Influx, `.csv` →
/// CSV. Otherwise the content decides: an input whose last line is `# EOF`, or that has
/// `# UNIT` lines, or whose first sample has a seconds timestamp (with a fraction, or below
/// 10^11), is OpenMetrics; a first line naming `timestamp`, `metric` and `value` columns is
/// CSV; a first data line `measurement[,tags] field=value` is Influx; `name{...} value` is
/// Prometheus. Only the first 64 KiB and the last 64 bytes of `input` are looked at, so the
/// whole (memory-mapped) file can be passed. `None` when nothing matches.
///
/// ```
/// use tsq_formats::{detect_format, Format};
/// assert_eq!(detect_format(None, b"cpu,host=a usage=1 1\n"), Some(Format::Influx));
/// assert_eq!(detect_format(None, b"up 1\n# EOF\n"), Some(Format::OpenMetrics));
/// assert_eq!(detect_format(None, b"up{job=\"a\"} 1 1767225600000\n"), Some(Format::Prometheus));
/// assert_eq!(detect_format(Some("x.csv"), b""), Some(Format::Csv));
/// ```
pub fn detect_format(file_name: Option<&str>, input: &[u8]) -> Option<Format> {
    let ends_with_eof = {
        let tail = &input[input.len().saturating_sub(64)..];
        let t = trim_end(tail);
        t.ends_with(b"\n# EOF") || t == b"# EOF"
    };
    if let Some(name) = file_name {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext {
            "om" | "openmetrics" => return Some(Format::OpenMetrics),
            "prom" => {
                return Some(if ends_with_eof {
                    Format::OpenMetrics
                } else {
                    Format::Prometheus
                })
            }
            "lp" | "influx" | "line" => return Some(Format::Influx),
            "csv" => return Some(Format::Csv),
            _ => {}
        }
    }
    if ends_with_eof {
        return Some(Format::OpenMetrics);
    }
    let head = &input[..input.len().min(64 << 10)];
    let head = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut saw_comment = false;
    for (n, line) in head.lines().enumerate() {
        let line = line.trim_end();
        if line.trim_start().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim_start();
            if c.starts_with("UNIT ") || c == "EOF" {
                return Some(Format::OpenMetrics);
            }
            saw_comment = true;
            continue;
        }
        if n == 0 || !saw_comment {
            let cols: Vec<&str> = line
                .split(',')
                .map(|c| c.trim().trim_matches('"'))
                .collect();
            let has = |names: &[&str]| cols.iter().any(|c| names.contains(c));
            if has(&["timestamp", "time", "timestamp_s", "timestamp_ms"])
                && has(&["metric", "__name__"])
                && has(&["value"])
            {
                return Some(Format::Csv);
            }
        }
        return Some(classify_sample_line(line));
    }
    if saw_comment {
        return Some(Format::Prometheus);
    }
    None
}

fn trim_end(b: &[u8]) -> &[u8] {
    let mut e = b.len();
    while e > 0 && matches!(b[e - 1], b'\n' | b'\r' | b' ' | b'\t') {
        e -= 1;
    }
    &b[..e]
}

/// Tells an Influx line from a Prometheus/OpenMetrics sample line.
fn classify_sample_line(line: &str) -> Format {
    // The series part: up to the closing brace, or the first blank.
    let series_end = if let Some(p) = line
        .find(['{', ' ', '\t'])
        .filter(|&p| line.as_bytes()[p] == b'{')
    {
        line[p..].find('}').map_or(line.len(), |q| p + q + 1)
    } else {
        line.find([' ', '\t']).unwrap_or(line.len())
    };
    let series = &line[..series_end];
    let rest: Vec<&str> = line[series_end..].split_whitespace().collect();
    if !series.contains('{') {
        // Influx: `m,t=v f=1` or `m f=1`.
        if series.contains(',') || rest.first().is_some_and(|f| f.contains('=')) {
            return Format::Influx;
        }
    }
    match rest.get(1) {
        Some(ts) if ts.contains('.') => Format::OpenMetrics,
        Some(ts) => match ts.parse::<i64>() {
            Ok(n) if n.abs() < 100_000_000_000 => Format::OpenMetrics,
            _ => Format::Prometheus,
        },
        None => Format::Prometheus,
    }
}
