//! Prometheus text 0.0.4 and OpenMetrics 1.0 text parsers.

use crate::error::{err, Fail, LineError};
use crate::key::{read_quoted, scan_series, unescape, LabelSpan, SeriesScan};
use crate::num::{parse_i64, parse_seconds_to_ms, parse_value, timestamp_in_range, RANGE_MSG};
use crate::{Event, LineParser, ParseOptions, Record};
use std::borrow::Cow;
use tsq_storage::{MetricMeta, MetricType};

/// Metadata being collected for the current metric family.
#[derive(Default)]
struct Family {
    name: String,
    meta: MetricMeta,
    /// Name the metadata was last emitted under.
    emitted_as: Option<String>,
    /// Changed since last emitted.
    dirty: bool,
}

pub(crate) struct TextParser {
    om: bool,
    keep_created: bool,
    now_ms: i64,
    eof_seen: bool,
    family: Family,
    spans: Vec<LabelSpan>,
    /// The series text of the previous sample line and its scan: consecutive lines of the
    /// same series (the usual layout) skip the label scan.
    last_key: String,
    last_scan: Option<SeriesScan>,
    /// The family named by the first descriptor read, and the `_created` sample names reported
    /// before it (at most [`CREATED_KEPT`]; `created_overflow` past that): what
    /// [`TextParser::can_continue_with`] needs to know of a parser started mid-input.
    first_family: Option<String>,
    created_before: Vec<String>,
    created_overflow: bool,
}

const CREATED_KEPT: usize = 16;

#[inline]
fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

#[inline]
fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

#[inline]
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_blank(b[i]) {
        i += 1;
    }
    i
}

impl TextParser {
    pub(crate) fn new(om: bool, opts: &ParseOptions) -> Self {
        TextParser {
            om,
            keep_created: opts.keep_created,
            now_ms: opts.now_ms,
            eof_seen: false,
            family: Family::default(),
            spans: Vec::with_capacity(16),
            last_key: String::new(),
            last_scan: None,
            first_family: None,
            created_before: Vec::new(),
            created_overflow: false,
        }
    }

    /// True when `next`, a fresh parser fed the input that follows what this one has read,
    /// reported exactly what this one would report continuing (see
    /// [`crate::Parser::can_continue_with`]). This parser's state that matters past a line
    /// break is: `# EOF` read, metadata not yet reported, and the current family (its
    /// `_created` samples are skipped, its descriptors after samples re-report it). So: no
    /// `# EOF` and nothing pending here, and `next` neither named this family in its first
    /// descriptor nor reported one of its `_created` samples before that descriptor. From
    /// `next`'s first descriptor on, both parsers are in the same state.
    pub(crate) fn can_continue_with(&self, next: &TextParser) -> bool {
        if self.eof_seen || self.family.dirty || next.created_overflow || self.om != next.om {
            return false;
        }
        if next.first_family.as_deref() == Some(self.family.name.as_str()) {
            return false;
        }
        let skips_created = self.om
            && !self.keep_created
            && matches!(
                self.family.meta.metric_type,
                MetricType::Counter | MetricType::Histogram | MetricType::Summary
            );
        !(skips_created
            && next.created_before.iter().any(|n| {
                n.len() == self.family.name.len() + 8
                    && n.starts_with(self.family.name.as_str())
                    && n.ends_with("_created")
            }))
    }

    /// Emits the pending metadata. `sample_name` is the first sample's metric name, when a
    /// sample triggered the flush.
    fn flush_meta<E, F>(&mut self, sample_name: Option<&str>, f: &mut F) -> Result<(), E>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        if !self.family.dirty {
            return Ok(());
        }
        self.family.dirty = false;
        let fam = &self.family.name;
        let name = if let Some(n) = &self.family.emitted_as {
            n.clone()
        } else if self.om
            && self.family.meta.metric_type == MetricType::Counter
            && !fam.ends_with("_total")
        {
            // OpenMetrics counter family `foo` has the sample `foo_total`; store the metadata
            // under the name queries use, unless the samples are named like the family.
            match sample_name {
                Some(s) if s == fam => fam.clone(),
                _ => format!("{fam}_total"),
            }
        } else {
            fam.clone()
        };
        let r = f(Event::Metadata {
            metric: &name,
            meta: &self.family.meta,
        });
        self.family.emitted_as = Some(name);
        r
    }

    fn descriptor<E, F>(&mut self, line: &str, f: &mut F) -> Result<(), Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        let b = line.as_bytes();
        // b[0] == '#'
        let i = if self.om {
            if b.get(1) != Some(&b' ') {
                return Err(LineError::new(1, "expected ' ' after '#'").into());
            }
            2
        } else {
            skip_blanks(b, 1)
        };
        let kw_end = token_end(b, i);
        let kw = &line[i..kw_end];
        match kw {
            "EOF" if self.om => {
                let j = skip_blanks(b, kw_end);
                if j != b.len() {
                    return Err(LineError::new(j, "expected end of line after '# EOF'").into());
                }
                self.eof_seen = true;
                return self.flush_meta(None, f).map_err(Fail::Callback);
            }
            "TYPE" | "HELP" | "UNIT" => {}
            _ if !self.om => return Ok(()), // a comment
            _ => {
                return Err(LineError::new(i, "expected TYPE, UNIT, HELP or EOF after '# '").into())
            }
        }
        if kw == "UNIT" && !self.om {
            return Ok(()); // not part of 0.0.4: a comment
        }
        if kw_end == b.len() || !is_blank(b[kw_end]) {
            return Err(LineError::new(
                kw_end,
                format!("expected ' ' and a metric name after '{kw}'"),
            )
            .into());
        }
        let ns = skip_blanks(b, kw_end);
        let (name, after): (Cow<'_, str>, usize) = if b.get(ns) == Some(&b'"') {
            let ((s, e), esc, next) = read_quoted(b, ns, "quoted name")?;
            if s == e {
                return Err(LineError::new(ns, "expected non-empty metric name").into());
            }
            let t = &line[s..e];
            (
                if esc {
                    Cow::Owned(unescape(t))
                } else {
                    Cow::Borrowed(t)
                },
                next,
            )
        } else {
            let mut j = ns;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
                j += 1;
            }
            if j == ns || b[ns].is_ascii_digit() {
                return Err(LineError::new(ns, "expected metric name").into());
            }
            (Cow::Borrowed(&line[ns..j]), j)
        };
        // The rest: separated by one blank.
        let rest_start;
        if after == b.len() {
            rest_start = after;
        } else if is_blank(b[after]) {
            rest_start = after + 1;
        } else {
            return Err(LineError::new(
                after,
                format!("expected ' ' after the metric name in '# {kw}'"),
            )
            .into());
        }
        if self.first_family.is_none() {
            self.first_family = Some(name.to_string());
        }
        if self.family.name != *name {
            self.flush_meta(None, f).map_err(Fail::Callback)?;
            self.family = Family {
                name: name.into_owned(),
                ..Family::default()
            };
        }
        match kw {
            "TYPE" => {
                let ts = skip_blanks(b, rest_start);
                let te = token_end(b, ts);
                let word = &line[ts..te];
                let known = if self.om {
                    matches!(
                        word,
                        "counter"
                            | "gauge"
                            | "histogram"
                            | "gaugehistogram"
                            | "summary"
                            | "info"
                            | "stateset"
                            | "unknown"
                    )
                } else {
                    matches!(
                        word,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    )
                };
                let t = if known { MetricType::parse(word) } else { None };
                let Some(t) = t else {
                    let list = if self.om {
                        "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                    } else {
                        "counter, gauge, histogram, summary or untyped"
                    };
                    return Err(LineError::new(ts, format!("expected metric type: {list}")).into());
                };
                let j = skip_blanks(b, te);
                if j != b.len() {
                    return Err(LineError::new(j, "expected end of line after metric type").into());
                }
                self.family.meta.metric_type = t;
            }
            "UNIT" => {
                self.family.meta.unit = line[rest_start..].trim_end().to_string();
            }
            _ => {
                self.family.meta.help = unescape_help(line[rest_start..].trim_end(), self.om);
            }
        }
        self.family.dirty = true;
        if let Some(n) = &self.family.emitted_as {
            // A descriptor after the family's samples: re-emit under the same name.
            let n = n.clone();
            self.family.dirty = false;
            f(Event::Metadata {
                metric: &n,
                meta: &self.family.meta,
            })
            .map_err(Fail::Callback)?;
        }
        Ok(())
    }
}

/// HELP text escapes: OpenMetrics `\\`, `\"`, `\n`; Prometheus 0.0.4 `\\`, `\n`. Other
/// backslashes stay as they are.
fn unescape_help(s: &str, om: bool) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.peek() {
                Some('\\') => {
                    out.push('\\');
                    it.next();
                }
                Some('n') => {
                    out.push('\n');
                    it.next();
                }
                Some('"') if om => {
                    out.push('"');
                    it.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl LineParser for TextParser {
    #[inline]
    fn line<E, F>(&mut self, line: &str, lineno: usize, f: &mut F) -> Result<u64, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        let b = line.as_bytes();
        let first = skip_blanks(b, 0);
        if self.eof_seen {
            if first == b.len() {
                return Ok(0);
            }
            return Err(LineError::new(first, "unexpected content after '# EOF'").into());
        }
        if first == b.len() {
            return Ok(0);
        }
        if b[0] == b'#' {
            self.descriptor(line, f)?;
            return Ok(0);
        }
        if first != 0 {
            return Err(LineError::new(0, "expected metric name at the start of the line").into());
        }
        let kl = self.last_key.len();
        let scan = match self.last_scan {
            Some(scan)
                if b.len() > kl
                    && is_blank(b[kl])
                    && b.starts_with(self.last_key.as_bytes())
                    && (b[kl - 1] == b'}' || b.get(skip_blanks(b, kl)) != Some(&b'{')) =>
            {
                scan
            }
            _ => {
                let scan = scan_series(line, 0, &mut self.spans)?;
                self.last_key.clear();
                self.last_key.push_str(&line[..scan.end]);
                self.last_scan = Some(scan);
                scan
            }
        };
        let mut i = scan.end;
        if i == b.len() {
            return Err(LineError::new(i, "expected ' ' and a value after the series").into());
        }
        if !is_blank(b[i]) {
            let msg = if b[i - 1] == b'}' {
                "expected ' ' after '}'"
            } else {
                "expected '{' or ' ' after metric name"
            };
            return Err(LineError::new(i, msg).into());
        }
        i = skip_blanks(b, i);
        let ve = token_end(b, i);
        if ve == i {
            return Err(LineError::new(i, "expected value").into());
        }
        let vs = &line[i..ve];
        let Some(value) = parse_value(vs) else {
            return Err(LineError::new(
                i,
                format!("invalid value '{vs}'; expected a number, NaN, +Inf or -Inf"),
            )
            .into());
        };
        i = skip_blanks(b, ve);
        let mut ts = self.now_ms;
        if i < b.len() && !(self.om && b[i] == b'#') {
            let te = token_end(b, i);
            let tok = &line[i..te];
            let t = if self.om {
                parse_seconds_to_ms(tok).ok_or_else(|| {
                    LineError::new(
                        i,
                        format!("invalid timestamp '{tok}'; expected seconds since the epoch"),
                    )
                })?
            } else {
                parse_i64(tok).ok_or_else(|| {
                    LineError::new(i, format!("invalid timestamp '{tok}'; expected integer milliseconds since the epoch"))
                })?
            };
            if !timestamp_in_range(t) {
                return Err(LineError::new(i, RANGE_MSG).into());
            }
            ts = t;
            i = skip_blanks(b, te);
            if i < b.len() && !(self.om && b[i] == b'#') {
                return Err(LineError::new(i, "expected end of line after timestamp").into());
            }
        }
        if i < b.len() {
            // OpenMetrics exemplar: ` # {labels} value [timestamp]`, accepted and ignored.
            if b.get(i + 1) != Some(&b' ') || b.get(skip_blanks(b, i + 1)) != Some(&b'{') {
                return Err(
                    LineError::new(i, "expected ' {' after '#' to start an exemplar").into(),
                );
            }
        }
        let raw_name = &line[scan.name.0..scan.name.1];
        let name: Cow<'_, str> = if scan.name_escaped {
            Cow::Owned(unescape(raw_name))
        } else {
            Cow::Borrowed(raw_name)
        };
        if self.family.dirty {
            self.flush_meta(Some(&name), f).map_err(Fail::Callback)?;
        }
        if self.om
            && !self.keep_created
            && matches!(
                self.family.meta.metric_type,
                MetricType::Counter | MetricType::Histogram | MetricType::Summary
            )
            && name.len() == self.family.name.len() + 8
            && name.starts_with(self.family.name.as_str())
            && name.ends_with("_created")
        {
            return Ok(0);
        }
        if self.first_family.is_none() && name.ends_with("_created") {
            if self.created_before.len() < CREATED_KEPT {
                self.created_before.push(name.to_string());
            } else {
                self.created_overflow = true;
            }
        }
        f(Event::Sample(Record {
            series_key: &line[..scan.end],
            timestamp_ms: ts,
            value,
            line: lineno,
        }))
        .map_err(Fail::Callback)?;
        Ok(1)
    }

    fn finish<E, F>(&mut self, f: &mut F) -> Result<(), Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        self.flush_meta(None, f).map_err(Fail::Callback)?;
        if self.om && !self.eof_seen {
            return err(0, "expected '# EOF' at the end of OpenMetrics input")
                .map_err(Fail::Syntax);
        }
        Ok(())
    }
}
