//! Series keys: the `name{label="value",...}` text of a series, as it appears in Prometheus
//! and OpenMetrics lines, scanned without allocating; and the canonical keys built for Influx
//! and CSV records.

use crate::error::{err, LineError, ParseError};
use tsq_storage::labels::{is_valid_label_name, is_valid_metric_name};
use tsq_storage::{Label, Labels, METRIC_NAME};

const fn table(extra_digits: bool, colon: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphabetic()
            || b == b'_'
            || (colon && b == b':')
            || (extra_digits && b.is_ascii_digit());
        c += 1;
    }
    t
}
static METRIC_START: [bool; 256] = table(false, true);
static METRIC_CONT: [bool; 256] = table(true, true);
static LABEL_START: [bool; 256] = table(false, false);
static LABEL_CONT: [bool; 256] = table(true, false);

/// One label found by [`scan_series`]: byte ranges into the scanned text (without quotes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LabelSpan {
    pub(crate) name: (usize, usize),
    pub(crate) name_escaped: bool,
    pub(crate) value: (usize, usize),
    pub(crate) value_escaped: bool,
}

/// What [`scan_series`] found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesScan {
    /// Metric name range (without quotes).
    pub(crate) name: (usize, usize),
    pub(crate) name_escaped: bool,
    /// Byte offset just after the series (after `}` or the name).
    pub(crate) end: usize,
}

#[inline]
fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Reads a double-quoted string starting at `b[i] == '"'`. Returns (content range, has
/// escapes, index after the closing quote). Accepted escapes: `\\`, `\"`, `\n`.
#[inline]
pub(crate) fn read_quoted(
    b: &[u8],
    i: usize,
    what: &str,
) -> Result<((usize, usize), bool, usize), LineError> {
    let start = i + 1;
    let mut j = start;
    let mut escaped = false;
    while j < b.len() {
        match b[j] {
            b'"' => return Ok(((start, j), escaped, j + 1)),
            b'\\' => {
                match b.get(j + 1) {
                    Some(b'\\' | b'"' | b'n') => {}
                    Some(_) => {
                        return err(
                            j,
                            "invalid escape sequence; expected '\\\\', '\\\"' or '\\n'",
                        )
                    }
                    None => break,
                }
                escaped = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
    err(b.len(), format!("expected '\"' to end the {what}"))
}

/// Undoes `\\`, `\"` and `\n`.
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Scans `name{a="b",...}` (or `{"quoted.name", a="b"}`) starting at `start`. Spaces and tabs
/// are accepted around `{`, `=`, `,` and `}`. Rejects invalid names, invalid escapes,
/// duplicate label names and a `__name__` label. `spans` receives the labels.
pub(crate) fn scan_series(
    line: &str,
    start: usize,
    spans: &mut Vec<LabelSpan>,
) -> Result<SeriesScan, LineError> {
    spans.clear();
    let b = line.as_bytes();
    let mut i = start;
    let mut name = None;
    if i < b.len() && METRIC_START[b[i] as usize] {
        let s = i;
        i += 1;
        while i < b.len() && METRIC_CONT[b[i] as usize] {
            i += 1;
        }
        name = Some(((s, i), false));
        let j = skip_blanks(b, i);
        if b.get(j) != Some(&b'{') {
            return Ok(SeriesScan {
                name: (s, i),
                name_escaped: false,
                end: i,
            });
        }
        i = j;
    } else if b.get(i) != Some(&b'{') {
        return err(i, "expected metric name");
    }
    // b[i] == '{'
    i += 1;
    let mut first = true;
    loop {
        i = skip_blanks(b, i);
        match b.get(i) {
            Some(b'}') => {
                i += 1;
                break;
            }
            None => return err(i, "expected label name or '}'"),
            _ => {}
        }
        let name_start = i;
        let (nrange, nesc);
        if b[i] == b'"' {
            let (r, esc, next) = read_quoted(b, i, "quoted name")?;
            nrange = r;
            nesc = esc;
            i = skip_blanks(b, next);
            if first && name.is_none() && b.get(i) != Some(&b'=') {
                if r.0 == r.1 {
                    return err(name_start, "expected non-empty metric name");
                }
                name = Some((r, esc));
                first = false;
                match b.get(i) {
                    Some(b',') => {
                        i += 1;
                        continue;
                    }
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return err(i, "expected ',' or '}' after metric name"),
                }
            }
            if r.0 == r.1 {
                return err(name_start, "expected non-empty label name");
            }
        } else if LABEL_START[b[i] as usize] {
            let s = i;
            i += 1;
            while i < b.len() && LABEL_CONT[b[i] as usize] {
                i += 1;
            }
            nrange = (s, i);
            nesc = false;
            i = skip_blanks(b, i);
        } else if first && name.is_none() {
            return err(i, "expected metric name");
        } else {
            return err(i, "expected label name");
        }
        first = false;
        let nm = &line[nrange.0..nrange.1];
        if nm == METRIC_NAME {
            return err(
                name_start,
                "label name '__name__' is reserved; expected another label name",
            );
        }
        if spans.iter().any(|s| &line[s.name.0..s.name.1] == nm) {
            return err(name_start, format!("duplicate label name '{nm}'"));
        }
        if b.get(i) != Some(&b'=') {
            return err(i, "expected '=' after label name");
        }
        i = skip_blanks(b, i + 1);
        if b.get(i) != Some(&b'"') {
            return err(i, "expected '\"' to start the label value");
        }
        let (vrange, vesc, next) = read_quoted(b, i, "label value")?;
        spans.push(LabelSpan {
            name: nrange,
            name_escaped: nesc,
            value: vrange,
            value_escaped: vesc,
        });
        i = skip_blanks(b, next);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                break;
            }
            _ => return err(i, "expected ',' or '}' after label value"),
        }
    }
    match name {
        Some((n, esc)) => Ok(SeriesScan {
            name: n,
            name_escaped: esc,
            end: i,
        }),
        None => err(start, "expected metric name"),
    }
}

fn text(s: &str, r: (usize, usize), escaped: bool) -> String {
    let t = &s[r.0..r.1];
    if escaped {
        unescape(t)
    } else {
        t.to_string()
    }
}

/// Builds the label set of a series key, as found in [`Record::series_key`](crate::Record):
/// `name{a="b"}`, `{"my.metric", a="b"}`. Labels with empty values are dropped (Prometheus
/// semantics). Errors carry line 1 and the column inside `key`.
///
/// ```
/// let l = tsq_formats::parse_series_key(r#"up{job="api",instance="a\"1"}"#).unwrap();
/// assert_eq!(l.metric_name(), Some("up"));
/// assert_eq!(l.get("instance"), Some("a\"1"));
/// ```
pub fn parse_series_key(key: &str) -> Result<Labels, ParseError> {
    let mut spans = Vec::new();
    let scan =
        scan_series(key, 0, &mut spans).map_err(|e| ParseError::at(1, key, e.offset, e.message))?;
    if scan.end != key.len() {
        return Err(ParseError::at(
            1,
            key,
            scan.end,
            "expected end of series key",
        ));
    }
    let mut v = Vec::with_capacity(spans.len() + 1);
    v.push((
        METRIC_NAME.to_string(),
        text(key, scan.name, scan.name_escaped),
    ));
    for s in &spans {
        v.push((
            text(key, s.name, s.name_escaped),
            text(key, s.value, s.value_escaped),
        ));
    }
    Ok(Labels::new(v))
}

/// Appends `s` as a double-quoted string with `\\`, `\"` and `\n` escaped.
pub(crate) fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|c| matches!(c, b'\\' | b'"' | b'\n')) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Appends a series key `name{a="b",c="d"}` (no spaces; names that are not legacy
/// identifiers quoted as OpenMetrics does), which [`parse_series_key`] reads back.
pub fn push_series_key<'a>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let plain = is_valid_metric_name(name);
    let mut opened = false;
    if plain {
        out.push_str(name);
    } else {
        out.push('{');
        push_quoted(out, name);
        opened = true;
    }
    for (n, v) in labels {
        if n == METRIC_NAME {
            continue;
        }
        out.push(if opened { ',' } else { '{' });
        opened = true;
        if is_valid_label_name(n) {
            out.push_str(n);
        } else {
            push_quoted(out, n);
        }
        out.push('=');
        push_quoted(out, v);
    }
    if opened {
        out.push('}');
    }
}

/// The series key of a label set (see [`push_series_key`]).
pub fn series_key(labels: &Labels) -> String {
    let mut s = String::new();
    push_series_key(
        &mut s,
        labels.metric_name().unwrap_or(""),
        labels
            .iter()
            .map(|l: &Label| (l.name.as_str(), l.value.as_str())),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let l = Labels::new([("__name__", "my.metric"), ("a b", "x\"\\\ny"), ("job", "j")]);
        let k = series_key(&l);
        assert_eq!(k, r#"{"my.metric","a b"="x\"\\\ny",job="j"}"#);
        assert_eq!(parse_series_key(&k).unwrap(), l);
        let l = Labels::new([("__name__", "up")]);
        assert_eq!(series_key(&l), "up");
        assert_eq!(parse_series_key("up").unwrap(), l);
    }

    #[test]
    fn key_errors() {
        let e = parse_series_key(r#"up{a="1",a="2"}"#).unwrap_err();
        assert_eq!(e.to_string(), "1:10: duplicate label name 'a'");
        let e = parse_series_key(r#"up{a"1"}"#).unwrap_err();
        assert_eq!(e.to_string(), "1:5: expected '=' after label name");
        let e = parse_series_key("up x").unwrap_err();
        assert_eq!(e.to_string(), "1:3: expected end of series key");
    }
}
