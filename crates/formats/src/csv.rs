//! CSV, long form: a header naming the columns, one sample per row.
//!
//! ```text
//! timestamp,metric,value,job,instance
//! 2026-01-01T00:00:00Z,up,1,api,a:80
//! ```
//!
//! `timestamp` (RFC 3339, or Unix seconds when |n| < 10^11 else Unix milliseconds;
//! `timestamp_s`/`timestamp_ms` force the unit), `metric` (or `__name__`) and `value` are
//! required in any order; every other column is a label of that name (empty cell = no label).

use crate::error::{Fail, LineError};
use crate::key::push_quoted;
use crate::num::{
    parse_i64, parse_rfc3339, parse_seconds_to_ms, parse_value, timestamp_in_range, RANGE_MSG,
};
use crate::{Event, LineParser, ParseOptions, Record};
use tsq_storage::labels::{is_valid_label_name, is_valid_metric_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsUnit {
    Auto,
    Seconds,
    Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Timestamp(TsUnit),
    Metric,
    Value,
    Label(String),
}

pub(crate) struct CsvParser {
    columns: Option<Vec<Column>>,
    /// Field ranges of the current line: (start, end, quoted with `""` inside).
    cells: Vec<(usize, usize, bool)>,
    scratch: String,
    key: String,
}

/// Splits a CSV line into cells (RFC 4180 quoting; spaces around unquoted cells trimmed).
fn split(line: &str, cells: &mut Vec<(usize, usize, bool)>) -> Result<(), LineError> {
    cells.clear();
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if b.get(i) == Some(&b'"') {
            let s = i + 1;
            let mut j = s;
            let mut esc = false;
            loop {
                match b.get(j) {
                    None => {
                        return Err(LineError::new(
                            b.len(),
                            "expected '\"' to end the quoted cell",
                        ))
                    }
                    Some(b'"') if b.get(j + 1) == Some(&b'"') => {
                        esc = true;
                        j += 2;
                    }
                    Some(b'"') => break,
                    _ => j += 1,
                }
            }
            cells.push((s, j, esc));
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            match b.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                _ => return Err(LineError::new(i, "expected ',' after the closing quote")),
            }
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            let mut e = i;
            while e > s && (b[e - 1] == b' ' || b[e - 1] == b'\t') {
                e -= 1;
            }
            cells.push((s, e, false));
            if i == b.len() {
                return Ok(());
            }
            i += 1;
        }
    }
}

fn cell<'a>(line: &'a str, c: (usize, usize, bool), scratch: &'a mut String) -> &'a str {
    let t = &line[c.0..c.1];
    if c.2 {
        scratch.clear();
        scratch.push_str(&t.replace("\"\"", "\""));
        scratch
    } else {
        t
    }
}

fn parse_ts(s: &str, unit: TsUnit) -> Option<i64> {
    let b = s.as_bytes();
    if unit == TsUnit::Auto && b.len() >= 20 && b[4] == b'-' {
        return parse_rfc3339(s);
    }
    let as_seconds = match unit {
        TsUnit::Seconds => true,
        TsUnit::Millis => false,
        TsUnit::Auto => {
            let f: f64 = s.parse().ok()?;
            f.abs() < 1e11
        }
    };
    if as_seconds {
        parse_seconds_to_ms(s)
    } else if let Some(n) = parse_i64(s) {
        Some(n)
    } else {
        let f: f64 = s.parse().ok()?;
        (f.is_finite() && f.abs() < 9.2e18).then(|| f.round() as i64)
    }
}

impl CsvParser {
    pub(crate) fn new(_opts: &ParseOptions) -> Self {
        CsvParser {
            columns: None,
            cells: Vec::new(),
            scratch: String::new(),
            key: String::new(),
        }
    }

    fn header(&mut self, line: &str) -> Result<(), LineError> {
        split(line, &mut self.cells)?;
        let mut cols = Vec::with_capacity(self.cells.len());
        for &c in &self.cells {
            let name = cell(line, c, &mut self.scratch);
            let col = match name {
                "timestamp" | "time" => Column::Timestamp(TsUnit::Auto),
                "timestamp_s" => Column::Timestamp(TsUnit::Seconds),
                "timestamp_ms" => Column::Timestamp(TsUnit::Millis),
                "metric" | "__name__" => Column::Metric,
                "value" => Column::Value,
                n if is_valid_label_name(n) && !n.starts_with("__") => Column::Label(n.to_string()),
                n => {
                    return Err(LineError::new(
                        c.0,
                        format!("invalid label name '{n}' in the CSV header; expected [a-zA-Z_][a-zA-Z0-9_]* not starting with '__'"),
                    ))
                }
            };
            let dup = cols.iter().any(|k: &Column| match (k, &col) {
                (Column::Timestamp(_), Column::Timestamp(_)) => true,
                (a, b) => a == b,
            });
            if dup {
                return Err(LineError::new(
                    c.0,
                    format!("duplicate column '{name}' in the CSV header"),
                ));
            }
            cols.push(col);
        }
        for (want, what) in [
            (Column::Timestamp(TsUnit::Auto), "a 'timestamp'"),
            (Column::Metric, "a 'metric'"),
            (Column::Value, "a 'value'"),
        ] {
            let found = cols.iter().any(|k| match (k, &want) {
                (Column::Timestamp(_), Column::Timestamp(_)) => true,
                (a, b) => a == b,
            });
            if !found {
                return Err(LineError::new(
                    0,
                    format!("expected {what} column in the CSV header"),
                ));
            }
        }
        self.columns = Some(cols);
        Ok(())
    }
}

impl LineParser for CsvParser {
    fn line<E, F>(&mut self, line: &str, lineno: usize, f: &mut F) -> Result<u64, Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        if line.trim().is_empty() {
            return Ok(0);
        }
        let Some(cols) = &self.columns else {
            // A UTF-8 byte order mark (spreadsheet exports) is not part of the first name.
            match line.strip_prefix('\u{feff}') {
                Some(rest) => self.header(rest).map_err(|mut e| {
                    e.offset += 3;
                    e
                })?,
                None => self.header(line)?,
            }
            return Ok(0);
        };
        split(line, &mut self.cells)?;
        if self.cells.len() != cols.len() {
            let off = if self.cells.len() > cols.len() {
                self.cells[cols.len()].0
            } else {
                line.len()
            };
            return Err(LineError::new(
                off,
                format!("expected {} cells, found {}", cols.len(), self.cells.len()),
            )
            .into());
        }
        let (mut ts, mut value) = (0i64, 0f64);
        // Metric name first, so that the key can be built in one pass.
        self.key.clear();
        for (c, col) in self.cells.iter().zip(cols) {
            if *col == Column::Metric {
                let name = cell(line, *c, &mut self.scratch);
                if !is_valid_metric_name(name) {
                    return Err(LineError::new(
                        c.0,
                        format!("invalid metric name '{name}'; expected [a-zA-Z_:][a-zA-Z0-9_:]*"),
                    )
                    .into());
                }
                self.key.push_str(name);
            }
        }
        let mut opened = false;
        for (c, col) in self.cells.iter().zip(cols) {
            match col {
                Column::Metric => {}
                Column::Timestamp(unit) => {
                    let s = cell(line, *c, &mut self.scratch);
                    ts = parse_ts(s, *unit).ok_or_else(|| {
                        LineError::new(
                            c.0,
                            format!("invalid timestamp '{s}'; expected RFC 3339, Unix seconds or Unix milliseconds"),
                        )
                    })?;
                    if !timestamp_in_range(ts) {
                        return Err(LineError::new(c.0, RANGE_MSG).into());
                    }
                }
                Column::Value => {
                    let s = cell(line, *c, &mut self.scratch);
                    value = parse_value(s).ok_or_else(|| {
                        LineError::new(
                            c.0,
                            format!("invalid value '{s}'; expected a number, NaN, +Inf or -Inf"),
                        )
                    })?;
                }
                Column::Label(n) => {
                    let v = cell(line, *c, &mut self.scratch);
                    if v.is_empty() {
                        continue;
                    }
                    self.key.push(if opened { ',' } else { '{' });
                    opened = true;
                    self.key.push_str(n);
                    self.key.push('=');
                    push_quoted(&mut self.key, v);
                }
            }
        }
        if opened {
            self.key.push('}');
        }
        f(Event::Sample(Record {
            series_key: &self.key,
            timestamp_ms: ts,
            value,
            line: lineno,
        }))
        .map_err(Fail::Callback)?;
        Ok(1)
    }

    fn finish<E, F>(&mut self, _f: &mut F) -> Result<(), Fail<E>>
    where
        F: FnMut(Event<'_>) -> Result<(), E>,
    {
        // An empty input (not even a header) holds no samples: fine.
        Ok(())
    }
}
