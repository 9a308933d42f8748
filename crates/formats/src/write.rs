//! Writers: OpenMetrics text and Influx line protocol.

use crate::key::push_series_key;
use crate::num::{write_f64, write_i64, write_ms_as_seconds};
use std::io::{self, Write};
use tsq_storage::labels::is_valid_metric_name;
use tsq_storage::{Labels, MetricMeta, MetricType};

const FLUSH_AT: usize = 256 << 10;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Writes OpenMetrics 1.0 text: for each metric, a family header (`# TYPE`, `# UNIT`,
/// `# HELP`) then its series lines `name{labels} value timestamp`, and `# EOF` at
/// [`finish`](Self::finish). Values are written so that they parse back bit-exact (shortest
/// round-trip decimal; `NaN`, `+Inf`, `-Inf`; NaN payloads, including the staleness marker,
/// are not representable and read back as the plain NaN). Timestamps are seconds with a
/// millisecond fraction (`1767225600.250`; the fraction is left out when zero).
///
/// OpenMetrics wants the samples of a metric family together: call [`family`](Self::family)
/// once per metric, then [`sample`](Self::sample) for all its samples, series after series,
/// each series in time order.
///
/// ```
/// use tsq_formats::OpenMetricsWriter;
/// use tsq_storage::{Labels, MetricMeta, MetricType};
/// let mut w = OpenMetricsWriter::new(Vec::new());
/// let meta = MetricMeta { metric_type: MetricType::Counter, help: "Requests.".into(), ..Default::default() };
/// w.family("http_requests_total", Some(&meta)).unwrap();
/// let l = Labels::new([("__name__", "http_requests_total"), ("code", "2xx")]);
/// w.sample(&l, 1_767_225_600_250, 10.0).unwrap();
/// let out = String::from_utf8(w.finish().unwrap()).unwrap();
/// assert_eq!(
///     out,
///     "# TYPE http_requests counter\n# HELP http_requests Requests.\n\
///      http_requests_total{code=\"2xx\"} 10 1767225600.250\n# EOF\n"
/// );
/// ```
pub struct OpenMetricsWriter<W: Write> {
    w: W,
    buf: Vec<u8>,
    key: String,
    /// Family names written so far: OpenMetrics allows one family block per name.
    families: std::collections::HashSet<String>,
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    if is_valid_metric_name(name) {
        out.extend_from_slice(name.as_bytes());
    } else {
        let mut s = String::new();
        crate::key::push_quoted(&mut s, name);
        out.extend_from_slice(s.as_bytes());
    }
}

impl<W: Write> OpenMetricsWriter<W> {
    /// A writer into `w` (buffered internally; pass a plain `File`).
    pub fn new(w: W) -> Self {
        OpenMetricsWriter {
            w,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            key: String::new(),
            families: std::collections::HashSet::new(),
        }
    }

    /// Starts the family of `metric` and writes its descriptors; without `meta`, just
    /// `# TYPE metric unknown` (so that the family boundary is explicit). A counter
    /// `foo_total` is written as family `foo` (OpenMetrics naming); the parser maps the
    /// metadata back to `foo_total`.
    ///
    /// A family name may be written once (OpenMetrics has one family block per name, and a
    /// second block's metadata would be ambiguous): starting it again, or starting a family
    /// that another metric already mapped to (counter `foo_total` and gauge `foo` are both
    /// family `foo`), is an `InvalidInput` error and writes nothing.
    pub fn family(&mut self, metric: &str, meta: Option<&MetricMeta>) -> io::Result<()> {
        let unknown = MetricMeta::default();
        let meta = meta.unwrap_or(&unknown);
        let fam = match meta.metric_type {
            MetricType::Counter => metric
                .strip_suffix("_total")
                .filter(|f| !f.is_empty())
                .unwrap_or(metric),
            _ => metric,
        };
        if !self.families.insert(fam.to_string()) {
            return Err(invalid(format!(
                "metric family {fam:?} (of {metric:?}) is already written: OpenMetrics allows one \
                 family per name, so write every series of a metric after one family() call"
            )));
        }
        let b = &mut self.buf;
        b.extend_from_slice(b"# TYPE ");
        push_name(b, fam);
        b.push(b' ');
        b.extend_from_slice(meta.metric_type.as_str().as_bytes());
        b.push(b'\n');
        if !meta.unit.is_empty() {
            if meta.unit.contains('\n') {
                return Err(invalid(format!("unit of {metric} contains a line break")));
            }
            b.extend_from_slice(b"# UNIT ");
            push_name(b, fam);
            b.push(b' ');
            b.extend_from_slice(meta.unit.as_bytes());
            b.push(b'\n');
        }
        if !meta.help.is_empty() {
            b.extend_from_slice(b"# HELP ");
            push_name(b, fam);
            b.push(b' ');
            for c in meta.help.bytes() {
                match c {
                    b'\\' => b.extend_from_slice(b"\\\\"),
                    b'"' => b.extend_from_slice(b"\\\""),
                    b'\n' => b.extend_from_slice(b"\\n"),
                    c => b.push(c),
                }
            }
            b.push(b'\n');
        }
        self.maybe_flush()
    }

    /// Writes one sample of the series `labels` (which must have a metric name).
    pub fn sample(&mut self, labels: &Labels, timestamp_ms: i64, value: f64) -> io::Result<()> {
        let Some(name) = labels.metric_name() else {
            return Err(invalid(format!("series {labels} has no metric name")));
        };
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        push_series_key(
            &mut key,
            name,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        let r = self.sample_key(&key, timestamp_ms, value);
        self.key = key;
        r
    }

    /// Writes one sample of a series given by its key, as built by
    /// [`series_key`](crate::series_key) (cache the key per series to save the work).
    #[inline]
    pub fn sample_key(
        &mut self,
        series_key: &str,
        timestamp_ms: i64,
        value: f64,
    ) -> io::Result<()> {
        let b = &mut self.buf;
        b.extend_from_slice(series_key.as_bytes());
        b.push(b' ');
        write_f64(b, value);
        b.push(b' ');
        write_ms_as_seconds(b, timestamp_ms);
        b.push(b'\n');
        self.maybe_flush()
    }

    #[inline]
    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes `# EOF`, flushes, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.buf.extend_from_slice(b"# EOF\n");
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Writes Influx line protocol with nanosecond timestamps. Names and tag values are escaped
/// (`\,` `\=` `\ ` `\\`); values are floats in shortest round-trip form. NaN and infinities
/// are not representable in line protocol and are refused, as are line breaks in names and
/// tag values.
///
/// ```
/// use tsq_formats::InfluxWriter;
/// let mut w = InfluxWriter::new(Vec::new());
/// w.line("cpu", &[("host", "a b")], &[("usage_user", 12.5), ("usage_idle", 80.0)], 1_767_225_600_000)
///     .unwrap();
/// let out = String::from_utf8(w.finish().unwrap()).unwrap();
/// assert_eq!(out, "cpu,host=a\\ b usage_user=12.5,usage_idle=80 1767225600000000000\n");
/// ```
pub struct InfluxWriter<W: Write> {
    w: W,
    buf: Vec<u8>,
}

fn push_escaped(out: &mut Vec<u8>, s: &str, measurement: bool) -> io::Result<()> {
    for c in s.bytes() {
        match c {
            b'\n' | b'\r' => return Err(invalid(format!("{s:?} contains a line break"))),
            b',' | b' ' | b'\\' => out.push(b'\\'),
            b'=' if !measurement => out.push(b'\\'),
            _ => {}
        }
        out.push(c);
    }
    Ok(())
}

impl<W: Write> InfluxWriter<W> {
    /// A writer into `w` (buffered internally).
    pub fn new(w: W) -> Self {
        InfluxWriter {
            w,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
        }
    }

    /// Writes one line. `timestamp_ms` is written in nanoseconds.
    pub fn line(
        &mut self,
        measurement: &str,
        tags: &[(&str, &str)],
        fields: &[(&str, f64)],
        timestamp_ms: i64,
    ) -> io::Result<()> {
        let start = self.buf.len();
        let r = self.line_inner(measurement, tags, fields, timestamp_ms);
        if r.is_err() {
            self.buf.truncate(start);
        }
        r?;
        if self.buf.len() >= FLUSH_AT {
            self.w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn line_inner(
        &mut self,
        measurement: &str,
        tags: &[(&str, &str)],
        fields: &[(&str, f64)],
        timestamp_ms: i64,
    ) -> io::Result<()> {
        if measurement.is_empty() || fields.is_empty() {
            return Err(invalid(
                "a line needs a measurement and at least one field".into(),
            ));
        }
        let ns = timestamp_ms.checked_mul(1_000_000).ok_or_else(|| {
            invalid(format!(
                "timestamp {timestamp_ms} ms does not fit in i64 nanoseconds"
            ))
        })?;
        let b = &mut self.buf;
        if measurement.starts_with('#') {
            return Err(invalid(format!(
                "measurement {measurement:?} would start a comment line"
            )));
        }
        push_escaped(b, measurement, true)?;
        for (k, v) in tags {
            if k.is_empty() || v.is_empty() {
                return Err(invalid(format!("empty tag key or value in {k:?}={v:?}")));
            }
            b.push(b',');
            push_escaped(b, k, false)?;
            b.push(b'=');
            push_escaped(b, v, false)?;
        }
        for (i, (k, v)) in fields.iter().enumerate() {
            if !v.is_finite() {
                return Err(invalid(format!(
                    "field {k} = {v} is not representable in line protocol"
                )));
            }
            b.push(if i == 0 { b' ' } else { b',' });
            push_escaped(b, k, false)?;
            b.push(b'=');
            write_f64(b, *v);
        }
        b.push(b' ');
        write_i64(b, ns);
        b.push(b'\n');
        Ok(())
    }

    /// Writes one sample of a series: measurement = metric name, one field `value`, tags =
    /// the other labels (the parser reads it back as the same series when the names are
    /// Prometheus names).
    pub fn sample(&mut self, labels: &Labels, timestamp_ms: i64, value: f64) -> io::Result<()> {
        let Some(name) = labels.metric_name() else {
            return Err(invalid(format!("series {labels} has no metric name")));
        };
        let tags: Vec<(&str, &str)> = labels
            .iter()
            .filter(|l| l.name != tsq_storage::METRIC_NAME)
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        self.line(name, &tags, &[("value", value)], timestamp_ms)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_name_is_written_once() {
        let counter = MetricMeta {
            metric_type: MetricType::Counter,
            ..MetricMeta::default()
        };
        let mut w = OpenMetricsWriter::new(Vec::new());
        w.family("up", None).unwrap();
        let e = w.family("up", None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("\"up\""), "{e}");
        // Counter foo_total is family foo: a later metric foo would be a second block.
        w.family("foo_total", Some(&counter)).unwrap();
        assert!(w.family("foo", None).is_err());
        w.family("bar", None).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(
            text,
            "# TYPE up unknown\n# TYPE foo counter\n# TYPE bar unknown\n# EOF\n"
        );
    }
}
