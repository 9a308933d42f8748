//! Influx line protocol parser.
//!
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`. Each field becomes
//! one sample of metric `measurement_field` (just `measurement` for a field named `value`),
//! with the tags as labels. Names are sanitized to Prometheus names (every character outside
//! `[a-zA-Z0-9_:]`, or `[a-zA-Z0-9_]` for labels, becomes `_`; a leading digit gets a `_`
//! prefix).

use crate::cache::FxHasher;
use crate::error::{Fail, LineError};
use crate::key::push_quoted;
use crate::num::{parse_i64, timestamp_in_range, RANGE_MSG};
use crate::{Event, LineParser, ParseOptions, Precision, Record};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

pub(crate) struct InfluxParser {
    now_ms: i64,
    precision: Precision,
    /// Sanitized measurement.
    measurement: String,
    /// `k="v",k2="v2"` of the current line.
    tagpart: String,
    /// Sanitized tag names of the current line, and their ranges.
    tag_names: String,
    tag_ranges: Vec<(usize, usize)>,
    /// Fields of the current line: key range, key has escapes, value.
    fields: Vec<(usize, usize, bool, f64)>,
    scratch: String,
    key: String,
    /// Raw `measurement,tags` text -> (sanitized measurement, `k="v",...`).
    series_cache: SeriesPartCache,
}

const fn stop_table(stops: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    t[b'\\' as usize] = true;
    let mut i = 0;
    while i < stops.len() {
        t[stops[i] as usize] = true;
        i += 1;
    }
    t
}
static STOP_MEASUREMENT: [bool; 256] = stop_table(b", ");
static STOP_KEY: [bool; 256] = stop_table(b"=, ");
static STOP_TAG_VALUE: [bool; 256] = stop_table(b", =");
static STOP_SPACE: [bool; 256] = stop_table(b" ");

/// Raw `measurement,tags` text -> (sanitized measurement, `k="v",...`).
type SeriesPartCache = HashMap<Box<str>, (Box<str>, Box<str>), BuildHasherDefault<FxHasher>>;

/// Bound of the cache of parsed series parts (measurement and tags).
const SERIES_CACHE_MAX: usize = 1 << 16;

/// Scans until an unescaped byte of the `stops` table (which also holds `\\`); returns
/// (end, saw a backslash).
#[inline]
fn scan_until(b: &[u8], mut i: usize, stops: &[bool; 256]) -> (usize, bool) {
    let mut esc = false;
    while i < b.len() {
        let c = b[i];
        if stops[c as usize] {
            if c == b'\\' {
                esc = true;
                i += 2;
                continue;
            }
            break;
        }
        i += 1;
    }
    (i.min(b.len()), esc)
}

/// Removes the backslash of `\,`, `\=`, `\ ` and `\\`; other backslashes are literal.
fn unescape_into(out: &mut String, s: &str) {
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(&n) = it.peek() {
                if matches!(n, ',' | '=' | ' ' | '\\') {
                    out.push(n);
                    it.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
}

/// Appends `s` sanitized to a Prometheus metric name (`label` = label name rules).
fn push_sanitized(out: &mut String, s: &str, label: bool) {
    let b = s.as_bytes();
    if !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || (c == b':' && !label))
    {
        out.push_str(s);
        return;
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || (c == ':' && !label) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
}

fn is_blank(c: u8) -> bool {
    c == b' '
}

/// Parses a field value: float, `10i`, `10u`, boolean.
fn field_value(tok: &str) -> Option<f64> {
    let b = tok.as_bytes();
    match *b.last()? {
        b'i' => return parse_i64(&tok[..tok.len() - 1]).map(|v| v as f64),
        b'u' => {
            let d = &tok[..tok.len() - 1];
            if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            return d.parse::<u64>().ok().map(|v| v as f64);
        }
        _ => {}
    }
    match tok {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(1.0),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(0.0),
        _ => {}
    }
    if !matches!(b[0], b'0'..=b'9' | b'-' | b'+' | b'.')
        || !b
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    tok.parse::<f64>().ok().filter(|v| v.is_finite())
}

impl InfluxParser {
    pub(crate) fn new(opts: &ParseOptions) -> Self {
        InfluxParser {
            now_ms: opts.now_ms,
            precision: opts.precision,
            measurement: String::new(),
            tagpart: String::new(),
            tag_names: String::new(),
            tag_ranges: Vec::new(),
            fields: Vec::new(),
            scratch: String::new(),
            key: String::new(),
            series_cache: HashMap::default(),
        }
    }

    /// Measurement and tags: fills `measurement` and `tagpart`, returns the offset of the
    /// blank before the fields.
    fn parse_series(&mut self, line: &str) -> Result<usize, LineError> {
        let b = line.as_bytes();
        self.measurement.clear();
        self.tagpart.clear();
        self.tag_names.clear();
        self.tag_ranges.clear();
        let (mut i, esc) = scan_until(b, 0, &STOP_MEASUREMENT);
        if i == 0 {
            return Err(LineError::new(0, "expected measurement name"));
        }
        if esc {
            self.scratch.clear();
            unescape_into(&mut self.scratch, &line[..i]);
            push_sanitized(&mut self.measurement, &self.scratch, false);
        } else {
            push_sanitized(&mut self.measurement, &line[..i], false);
        }
        // Tags.
        while b.get(i) == Some(&b',') {
            let ks = i + 1;
            let (ke, kesc) = scan_until(b, ks, &STOP_KEY);
            if ke == ks {
                return Err(LineError::new(ks, "expected tag key"));
            }
            if b.get(ke) != Some(&b'=') {
                return Err(LineError::new(ke, "expected '=' after tag key"));
            }
            let vs = ke + 1;
            let (ve, vesc) = scan_until(b, vs, &STOP_TAG_VALUE);
            if b.get(ve) == Some(&b'=') {
                return Err(LineError::new(
                    ve,
                    "expected ',' or ' ' after tag value (escape '=' as '\\=')",
                ));
            }
            if ve == vs {
                return Err(LineError::new(vs, "expected tag value"));
            }
            let start = self.tag_names.len();
            if kesc {
                self.scratch.clear();
                unescape_into(&mut self.scratch, &line[ks..ke]);
                push_sanitized(&mut self.tag_names, &self.scratch, true);
            } else {
                push_sanitized(&mut self.tag_names, &line[ks..ke], true);
            }
            let name = &self.tag_names[start..];
            if name == "__name__" {
                return Err(LineError::new(
                    ks,
                    "tag key '__name__' is reserved; expected another tag key",
                ));
            }
            if self
                .tag_ranges
                .iter()
                .any(|&(s, e)| &self.tag_names[s..e] == name)
            {
                return Err(LineError::new(ks, format!("duplicate tag key '{name}'")));
            }
            self.tag_ranges.push((start, self.tag_names.len()));
            if !self.tagpart.is_empty() {
                self.tagpart.push(',');
            }
            self.tagpart.push_str(&self.tag_names[start..]);
            self.tagpart.push('=');
            if vesc {
                self.scratch.clear();
                unescape_into(&mut self.scratch, &line[vs..ve]);
                push_quoted(&mut self.tagpart, &self.scratch);
            } else {
                push_quoted(&mut self.tagpart, &line[vs..ve]);
            }
            i = ve;
        }
        if i >= b.len() || !is_blank(b[i]) {
            return Err(LineError::new(
                i,
                "expected ' ' and fields after the measurement and tags",
            ));
        }
        Ok(i)
    }

    fn parse_line(&mut self, line: &str) -> Result<i64, LineError> {
        let b = line.as_bytes();
        self.fields.clear();
        let (series_end, _) = scan_until(b, 0, &STOP_SPACE);
        let mut i = if let Some((m, t)) = self.series_cache.get(&line[..series_end]) {
            self.measurement.clear();
            self.measurement.push_str(m);
            self.tagpart.clear();
            self.tagpart.push_str(t);
            series_end
        } else {
            let i = self.parse_series(line)?;
            if self.series_cache.len() >= SERIES_CACHE_MAX {
                self.series_cache.clear();
            }
            self.series_cache.insert(
                line[..i].into(),
                (
                    self.measurement.as_str().into(),
                    self.tagpart.as_str().into(),
                ),
            );
            i
        };
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        // Fields.
        loop {
            let ks = i;
            let (ke, kesc) = scan_until(b, ks, &STOP_KEY);
            if ke == ks {
                return Err(LineError::new(ks, "expected field key"));
            }
            if b.get(ke) != Some(&b'=') {
                return Err(LineError::new(ke, "expected '=' after field key"));
            }
            let vs = ke + 1;
            if b.get(vs) == Some(&b'"') {
                return Err(LineError::new(
                    vs,
                    "string field values are not supported; expected a float, integer (10i), unsigned (10u) or boolean",
                ));
            }
            let mut ve = vs;
            while ve < b.len() && !matches!(b[ve], b',' | b' ') {
                ve += 1;
            }
            let tok = &line[vs..ve];
            if tok.is_empty() {
                return Err(LineError::new(vs, "expected field value"));
            }
            let Some(v) = field_value(tok) else {
                return Err(LineError::new(
                    vs,
                    format!("invalid field value '{tok}'; expected a float, integer (10i), unsigned (10u) or boolean"),
                ));
            };
            let k = &line[ks..ke];
            if self.fields.iter().any(|&(s, e, _, _)| &line[s..e] == k) {
                return Err(LineError::new(ks, format!("duplicate field key '{k}'")));
            }
            self.fields.push((ks, ke, kesc, v));
            i = ve;
            if b.get(i) == Some(&b',') {
                i += 1;
                continue;
            }
            break;
        }
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        if i == b.len() {
            return Ok(self.now_ms);
        }
        let ts_start = i;
        while i < b.len() && !is_blank(b[i]) {
            i += 1;
        }
        let tok = &line[ts_start..i];
        let Some(t) = parse_i64(tok) else {
            return Err(LineError::new(
                ts_start,
                format!("invalid timestamp '{tok}'; expected an integer"),
            ));
        };
        let ms = match self.precision {
            Precision::Nanoseconds => Some(t.div_euclid(1_000_000)),
            Precision::Microseconds => Some(t.div_euclid(1_000)),
            Precision::Milliseconds => Some(t),
            Precision::Seconds => t.checked_mul(1000),
        };
        let ms = ms
            .filter(|&m| timestamp_in_range(m))
            .ok_or_else(|| LineError::new(ts_start, RANGE_MSG))?;
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        if i != b.len() {
            return Err(LineError::new(i, "expected end of line after timestamp"));
        }
        Ok(ms)
    }
}

impl LineParser for InfluxParser {
    fn line<E, F>(&mut self, line: &str, lineno: usize, f: &mut F) -> Result<u64, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        let t = line.trim_start_matches([' ', '\t']);
        if t.is_empty() || t.starts_with('#') {
            return Ok(0);
        }
        if t.len() != line.len() {
            return Err(
                LineError::new(0, "expected measurement name at the start of the line").into(),
            );
        }
        let ts = self.parse_line(line)?;
        for &(ks, ke, kesc, v) in &self.fields {
            self.key.clear();
            self.key.push_str(&self.measurement);
            let fk = &line[ks..ke];
            let fk = if kesc {
                self.scratch.clear();
                unescape_into(&mut self.scratch, fk);
                self.scratch.as_str()
            } else {
                fk
            };
            if fk != "value" {
                self.key.push('_');
                push_sanitized(&mut self.key, fk, false);
            }
            if !self.tagpart.is_empty() {
                self.key.push('{');
                self.key.push_str(&self.tagpart);
                self.key.push('}');
            }
            f(Event::Sample(Record {
                series_key: &self.key,
                timestamp_ms: ts,
                value: v,
                line: lineno,
            }))
            .map_err(Fail::Callback)?;
        }
        Ok(self.fields.len() as u64)
    }

    fn finish<E, F>(&mut self, _f: &mut F) -> Result<(), Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        Ok(())
    }
}
