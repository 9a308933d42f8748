//! tsq-formats: ingestion and export formats, and the benchmark datasets.
//!
//! * Parsers for OpenMetrics 1.0 text, Prometheus text 0.0.4, Influx line protocol and CSV,
//!   through one streaming, zero-copy driver: [`parse`]. Each sample arrives as a [`Record`]
//!   whose `series_key` is the series text (`name{a="b"}`); callers cache their series by
//!   that key and build [`Labels`](tsq_storage::Labels) with [`parse_series_key`] only on a
//!   cache miss.
//! * Writers: [`OpenMetricsWriter`] (for `tsq dump`) and [`InfluxWriter`]; what they write
//!   parses back to the same samples.
//! * The deterministic benchmark datasets `devops` and `workload` ([`gen`]).
//!
//! ```
//! use tsq_formats::{parse, Event, Format, ParseOptions};
//!
//! let input = b"# TYPE up gauge\nup{job=\"api\"} 1 1767225600.5\n# EOF\n";
//! let mut samples = Vec::new();
//! let summary = parse(input, &ParseOptions::new(Format::OpenMetrics), |ev| {
//!     if let Event::Sample(r) = ev {
//!         samples.push((r.series_key.to_string(), r.timestamp_ms, r.value));
//!     }
//!     Ok::<(), std::convert::Infallible>(())
//! })
//! .unwrap();
//! assert_eq!(summary.samples, 1);
//! assert_eq!(samples, [("up{job=\"api\"}".to_string(), 1_767_225_600_500, 1.0)]);
//!
//! let err = parse(b"up{job=\"api\" 1\n", &ParseOptions::new(Format::Prometheus), |_| {
//!     Ok::<(), std::convert::Infallible>(())
//! })
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "1:14: expected ',' or '}' after label value");
//! ```

#![forbid(unsafe_code)]

mod cache;
mod csv;
mod detect;
mod error;
pub mod gen;
mod influx;
mod key;
mod num;
mod text;
mod write;

pub use cache::{FxHasher, SeriesCache};
pub use detect::detect_format;
pub use error::{ParseError, ParseFailure};
pub use key::{parse_series_key, push_series_key, series_key};
pub use num::{
    format_rfc3339_ms, parse_rfc3339, rfc3339_ms_bytes, timestamp_in_range, write_f64,
    write_ms_as_seconds, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS,
};
pub use write::{InfluxWriter, OpenMetricsWriter};

use error::{Fail, LineError};
use std::fmt;
use tsq_storage::MetricMeta;

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`): timestamps in seconds, `# EOF`.
    OpenMetrics,
    /// Prometheus text exposition 0.0.4: optional integer millisecond timestamps.
    Prometheus,
    /// Influx line protocol.
    Influx,
    /// CSV with a header naming the `timestamp`, `metric` and `value` columns.
    Csv,
}

impl Format {
    /// The CLI spelling: `openmetrics`, `prometheus`, `influx`, `csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenMetrics => "openmetrics",
            Format::Prometheus => "prometheus",
            Format::Influx => "influx",
            Format::Csv => "csv",
        }
    }

    /// Parses the CLI spelling (also `om`, `prom`, `line-protocol`, `lp`).
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "openmetrics" | "om" => Format::OpenMetrics,
            "prometheus" | "prom" => Format::Prometheus,
            "influx" | "line-protocol" | "lp" => Format::Influx,
            "csv" => Format::Csv,
            _ => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit of Influx line-protocol timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Nanoseconds (the line-protocol default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
}

impl Precision {
    /// Parses `ns`, `us`, `ms`, `s`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "ns" => Precision::Nanoseconds,
            "us" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            _ => return None,
        })
    }

    /// The spelling `ns`, `us`, `ms`, `s`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }
}

/// The default maximum line length: 1 MiB.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 1 << 20;

/// Options of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// The input format (see [`detect_format`]).
    pub format: Format,
    /// The timestamp, in ms since the epoch, of samples written without one.
    /// [`ParseOptions::new`] sets the current time.
    pub now_ms: i64,
    /// Unit of Influx timestamps (default nanoseconds).
    pub precision: Precision,
    /// Lines longer than this many bytes (without the line break) are rejected.
    pub max_line_length: usize,
    /// Count and skip invalid lines instead of stopping at the first one.
    pub skip_invalid: bool,
    /// With `skip_invalid`, how many errors [`ParseSummary::errors`] keeps (the first ones).
    pub max_errors: usize,
    /// OpenMetrics: keep `foo_created` samples of counters, histograms and summaries as
    /// series (default false: they are creation times, not measurements, and are skipped).
    pub keep_created: bool,
}

impl ParseOptions {
    /// Defaults for `format`: `now_ms` = the current time, nanosecond precision, 1 MiB lines,
    /// stop at the first error.
    pub fn new(format: Format) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        ParseOptions {
            format,
            now_ms,
            precision: Precision::Nanoseconds,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            skip_invalid: false,
            max_errors: 100,
            keep_created: false,
        }
    }
}

/// One sample. `series_key` borrows the input (Prometheus, OpenMetrics) or a buffer of the
/// parser (Influx, CSV), so it is only valid during the callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// The series as text: `name{a="b",...}` or `{"quoted.name",a="b"}`. Equal series may
    /// have different keys (label order, spaces); [`parse_series_key`] gives the labels.
    pub series_key: &'a str,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
    /// The 1-based line the sample came from.
    pub line: usize,
}

/// What [`parse`] reports to its callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// A sample.
    Sample(Record<'a>),
    /// Metadata (`# TYPE`/`# UNIT`/`# HELP`) of a metric name, complete as far as read. The
    /// same metric may be reported again with more fields filled in; the last report wins.
    /// For an OpenMetrics counter family `foo` whose samples are `foo_total`, the metric is
    /// `foo_total`.
    Metadata {
        /// Metric name.
        metric: &'a str,
        /// Its metadata.
        meta: &'a MetricMeta,
    },
}

/// What [`parse`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Lines read (including blank lines and comments).
    pub lines: usize,
    /// Samples reported to the callback.
    pub samples: u64,
    /// Lines skipped as invalid (with `skip_invalid`).
    pub skipped_lines: u64,
    /// All errors found (with `skip_invalid`), including any not kept in `errors`.
    pub error_count: u64,
    /// The first `max_errors` errors (with `skip_invalid`).
    pub errors: Vec<ParseError>,
}

/// A per-format line parser driven by [`parse`].
pub(crate) trait LineParser {
    /// Parses one line (without the line break), reports what it holds, returns the number of
    /// samples reported. A line either fails before reporting any sample, or succeeds.
    fn line<E, F>(&mut self, line: &str, lineno: usize, f: &mut F) -> Result<u64, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>;

    /// End of input. A syntax error returned here is reported one line past the last.
    fn finish<E, F>(&mut self, f: &mut F) -> Result<(), Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>;
}

/// Parses `input` in the format of `opts.format`, calling `f` for every sample and metadata,
/// in input order.
///
/// Stops at the first invalid line with [`ParseFailure::Syntax`] (line, character column,
/// what was expected) unless `opts.skip_invalid` is set, in which case invalid lines are
/// counted in the summary and the rest is still reported. A line is reported entirely or not
/// at all. An error returned by `f` stops parsing with [`ParseFailure::Callback`].
///
/// Lines end with `\n` or `\r\n`. Invalid UTF-8 and lines longer than
/// `opts.max_line_length` bytes are errors.
pub fn parse<E, F>(input: &[u8], opts: &ParseOptions, f: F) -> Result<ParseSummary, ParseFailure<E>>
where
    F: FnMut(Event<'_>) -> Result<(), E>,
{
    Parser::new(opts).finish(input, f)
}

/// Position of the first `\n`, eight bytes at a time.
#[inline]
fn find_newline(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut i = 0;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ NL;
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == b'\n').map(|p| i + p)
}

fn record<E>(
    opts: &ParseOptions,
    sum: &mut ParseSummary,
    e: ParseError,
) -> Result<(), ParseFailure<E>> {
    if !opts.skip_invalid {
        return Err(ParseFailure::Syntax(e));
    }
    sum.error_count += 1;
    if sum.errors.len() < opts.max_errors {
        sum.errors.push(e);
    }
    Ok(())
}

/// Parses every line of `input` (the last one may lack its line break).
fn run_lines<P, E, F>(
    p: &mut P,
    opts: &ParseOptions,
    sum: &mut ParseSummary,
    input: &[u8],
    f: &mut F,
) -> Result<(), ParseFailure<E>>
where
    P: LineParser,
    F: FnMut(Event<'_>) -> Result<(), E>,
{
    let mut pos = 0;
    let mut lineno = sum.lines;
    let record = |sum: &mut ParseSummary, e: ParseError| record(opts, sum, e);
    while pos < input.len() {
        // Validate UTF-8 once for a large run of input, not line by line.
        let (text, bad_at) = match std::str::from_utf8(&input[pos..]) {
            Ok(t) => (t, None),
            Err(e) => {
                let t = std::str::from_utf8(&input[pos..pos + e.valid_up_to()]).unwrap_or_default();
                (t, Some(pos + e.valid_up_to()))
            }
        };
        let tb = text.as_bytes();
        let mut i = 0;
        // Complete lines of valid text.
        while i <= tb.len() {
            let nl = find_newline(&tb[i..]);
            let end = match nl {
                Some(n) => i + n,
                None if bad_at.is_none() && i < tb.len() => tb.len(),
                None => break,
            };
            lineno += 1;
            sum.lines = lineno;
            let mut line = &text[i..end];
            i = end + 1;
            if line.ends_with('\r') {
                line = &line[..line.len() - 1];
            }
            if line.len() > opts.max_line_length {
                let mut cut = opts.max_line_length;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                let msg = format!(
                    "line longer than {} bytes; expected a line break",
                    opts.max_line_length
                );
                sum.skipped_lines += 1;
                record(sum, ParseError::at(lineno, line, cut, msg))?;
                continue;
            }
            match p.line(line, lineno, f) {
                Ok(n) => sum.samples += n,
                Err(Fail::Callback(e)) => return Err(ParseFailure::Callback(e)),
                Err(Fail::Syntax(LineError { offset, message })) => {
                    sum.skipped_lines += 1;
                    record(sum, ParseError::at(lineno, line, offset, message))?;
                }
            }
        }
        let Some(bad) = bad_at else {
            break;
        };
        // The line holding invalid UTF-8: from the end of the last complete line to the next
        // line break.
        let line_start = pos + i.min(tb.len());
        let line_end = find_newline(&input[bad..]).map_or(input.len(), |n| bad + n);
        lineno += 1;
        sum.lines = lineno;
        let good = &text[i.min(tb.len())..];
        let e = if line_end - line_start > opts.max_line_length {
            let msg = format!(
                "line longer than {} bytes; expected a line break",
                opts.max_line_length
            );
            let mut cut = opts.max_line_length.min(good.len());
            while !good.is_char_boundary(cut) {
                cut -= 1;
            }
            ParseError::at(lineno, good, cut, msg)
        } else {
            ParseError::at(
                lineno,
                good,
                good.len(),
                "invalid UTF-8; expected UTF-8 text",
            )
        };
        sum.skipped_lines += 1;
        record(sum, e)?;
        pos = line_end + 1;
    }
    Ok(())
}

/// End of input: the format's final checks (OpenMetrics `# EOF`).
fn finish_lines<P, E, F>(
    p: &mut P,
    opts: &ParseOptions,
    sum: &mut ParseSummary,
    f: &mut F,
) -> Result<(), ParseFailure<E>>
where
    P: LineParser,
    F: FnMut(Event<'_>) -> Result<(), E>,
{
    match p.finish(f) {
        Ok(()) => Ok(()),
        Err(Fail::Callback(e)) => Err(ParseFailure::Callback(e)),
        Err(Fail::Syntax(LineError { message, .. })) => {
            let e = ParseError {
                line: sum.lines + 1,
                column: 1,
                message,
            };
            record(opts, sum, e)
        }
    }
}

enum Kind {
    Text(text::TextParser),
    Influx(influx::InfluxParser),
    Csv(csv::CsvParser),
}

/// A parser fed in chunks, for inputs that are not in memory as a whole (stdin, large
/// files read piece by piece) and for progress reporting. [`parse`] is
/// `Parser::new(opts).finish(input, f)`.
///
/// ```
/// use tsq_formats::{Event, Format, ParseOptions, Parser};
/// let mut p = Parser::new(&ParseOptions::new(Format::Prometheus));
/// let mut n = 0;
/// let mut count = |ev: Event<'_>| {
///     if let Event::Sample(_) = ev {
///         n += 1;
///     }
///     Ok::<(), std::convert::Infallible>(())
/// };
/// let mut buf = b"a 1\nb 2\nc".to_vec();
/// let used = p.feed(&buf, &mut count).unwrap(); // complete lines only
/// assert_eq!(used, 8);
/// buf.drain(..used);
/// buf.extend_from_slice(b" 3\n");
/// let summary = p.finish(&buf, &mut count).unwrap();
/// assert_eq!((summary.samples, summary.lines), (3, 3));
/// assert_eq!(n, 3);
/// ```
pub struct Parser {
    kind: Kind,
    opts: ParseOptions,
    sum: ParseSummary,
    /// Inside an over-long line reported by `feed`: skip to its end.
    skipping_line: bool,
}

impl Parser {
    /// A parser for `opts.format`.
    pub fn new(opts: &ParseOptions) -> Parser {
        let kind = match opts.format {
            Format::OpenMetrics => Kind::Text(text::TextParser::new(true, opts)),
            Format::Prometheus => Kind::Text(text::TextParser::new(false, opts)),
            Format::Influx => Kind::Influx(influx::InfluxParser::new(opts)),
            Format::Csv => Kind::Csv(csv::CsvParser::new(opts)),
        };
        Parser {
            kind,
            opts: opts.clone(),
            sum: ParseSummary::default(),
            skipping_line: false,
        }
    }

    /// What was read so far.
    pub fn summary(&self) -> &ParseSummary {
        &self.sum
    }

    fn lines<E, F>(&mut self, input: &[u8], f: &mut F) -> Result<(), ParseFailure<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        match &mut self.kind {
            Kind::Text(p) => run_lines(p, &self.opts, &mut self.sum, input, f),
            Kind::Influx(p) => run_lines(p, &self.opts, &mut self.sum, input, f),
            Kind::Csv(p) => run_lines(p, &self.opts, &mut self.sum, input, f),
        }
    }

    /// Skips the rest of an over-long line; returns the bytes consumed.
    fn skip_long(&mut self, input: &[u8]) -> usize {
        if !self.skipping_line {
            return 0;
        }
        match find_newline(input) {
            Some(n) => {
                self.skipping_line = false;
                n + 1
            }
            None => input.len(),
        }
    }

    /// True when `next`, a fresh parser (same options) fed the input that follows the
    /// complete lines this parser has read, reported exactly the events and errors that this
    /// parser would have reported continuing through that input (with line numbers counted
    /// from the restart: add this parser's [`ParseSummary::lines`]). Call it once both have
    /// read their part, and before `next` is finished.
    ///
    /// This lets a caller parse the two halves of a large input on two threads: cut at any
    /// line start, parse both halves with their own parser, then ask the first half's
    /// parser whether the second half's result stands; when it says false, feed the second
    /// half to the first half's parser instead. Influx line protocol carries no state from
    /// line to line (always true). Prometheus and OpenMetrics text carry `# EOF` and the
    /// current metric family: false when the first half ends after `# EOF` or with
    /// descriptors not yet followed by a sample, or when the second half names the first
    /// half's last family in its first descriptor or holds `_created` samples of it before
    /// that. CSV: never (the header names the columns).
    pub fn can_continue_with(&self, next: &Parser) -> bool {
        if self.skipping_line || self.opts != next.opts {
            return false;
        }
        match (&self.kind, &next.kind) {
            (Kind::Text(p), Kind::Text(n)) => p.can_continue_with(n),
            (Kind::Influx(_), Kind::Influx(_)) => true,
            _ => false,
        }
    }

    /// Parses the complete lines at the start of `input` (up to its last line break) and
    /// returns how many bytes it used: keep the rest and pass it again, with more input
    /// appended, to the next `feed` or to [`finish`](Self::finish). A chunk with no line
    /// break and longer than `max_line_length` is reported as an over-long line.
    pub fn feed<E, F>(&mut self, input: &[u8], mut f: F) -> Result<usize, ParseFailure<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        let start = self.skip_long(input);
        let rest = &input[start..];
        match rest.iter().rposition(|&c| c == b'\n') {
            Some(last) => {
                self.lines(&rest[..=last], &mut f)?;
                Ok(start + last + 1)
            }
            None if rest.len() > self.opts.max_line_length => {
                self.sum.lines += 1;
                self.sum.skipped_lines += 1;
                let msg = format!(
                    "line longer than {} bytes; expected a line break",
                    self.opts.max_line_length
                );
                let e = ParseError {
                    line: self.sum.lines,
                    column: self.opts.max_line_length + 1,
                    message: msg,
                };
                record(&self.opts, &mut self.sum, e)?;
                self.skipping_line = true;
                Ok(input.len())
            }
            None => Ok(start),
        }
    }

    /// Parses the rest of the input (its last line may lack a line break), runs the
    /// end-of-input checks, and returns the summary.
    pub fn finish<E, F>(mut self, input: &[u8], mut f: F) -> Result<ParseSummary, ParseFailure<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        let start = self.skip_long(input);
        self.lines(&input[start..], &mut f)?;
        match &mut self.kind {
            Kind::Text(p) => finish_lines(p, &self.opts, &mut self.sum, &mut f)?,
            Kind::Influx(p) => finish_lines(p, &self.opts, &mut self.sum, &mut f)?,
            Kind::Csv(p) => finish_lines(p, &self.opts, &mut self.sum, &mut f)?,
        }
        Ok(self.sum)
    }
}

#[cfg(test)]
mod tests;
