//! Output formats of query results: table, csv, json, prom-json, chart.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use tsq::exec::{QueryResult, Value};
use tsq::storage::Labels;

use crate::query::QuerySpec;
use crate::timearg::fmt_time;

/// How `tsq query` prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// `series,timestamp,value` rows.
    Csv,
    /// tsq's JSON: ms timestamps, numbers as numbers.
    Json,
    /// Exactly the body of the Prometheus HTTP API.
    PromJson,
    /// A chart drawn in the terminal (range queries); `--out x.svg` also writes SVG.
    Chart,
}

/// Formats a float as Prometheus does in its API (Go's `strconv.FormatFloat(v, 'f', -1, 64)`).
pub fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A timestamp as the Prometheus API writes it: seconds, with a 3-digit fraction when not
/// whole (`1435781451.781`, `1435781451.050`).
pub fn prom_ts(ms: i64) -> String {
    let (sign, t) = if ms < 0 {
        ("-", -(ms as i128))
    } else {
        ("", ms as i128)
    };
    let (s, f) = (t / 1000, t % 1000);
    if f == 0 {
        format!("{sign}{s}")
    } else {
        format!("{sign}{s}.{f:03}")
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn prom_metric(labels: &Labels) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&json_str(&l.name));
        s.push(':');
        s.push_str(&json_str(&l.value));
    }
    s.push('}');
    s
}

fn annotations(res: &QueryResult) -> String {
    let mut s = String::new();
    for (key, list) in [("warnings", &res.warnings), ("infos", &res.infos)] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|w| json_str(w)).collect();
            s.push_str(&format!(",\"{key}\":[{}]", items.join(",")));
        }
    }
    s
}

/// The Prometheus HTTP API body for a successful query.
pub fn prom_json(res: &QueryResult) -> String {
    let data = match &res.value {
        Value::Scalar { t, v } => format!(
            "{{\"resultType\":\"scalar\",\"result\":[{},{}]}}",
            prom_ts(*t),
            json_str(&prom_float(*v))
        ),
        Value::String { t, s } => {
            format!(
                "{{\"resultType\":\"string\",\"result\":[{},{}]}}",
                prom_ts(*t),
                json_str(s)
            )
        }
        Value::Vector(v) => {
            let items: Vec<String> = v
                .iter()
                .map(|s| {
                    format!(
                        "{{\"metric\":{},\"value\":[{},{}]}}",
                        prom_metric(&s.labels),
                        prom_ts(s.t),
                        json_str(&prom_float(s.v))
                    )
                })
                .collect();
            format!(
                "{{\"resultType\":\"vector\",\"result\":[{}]}}",
                items.join(",")
            )
        }
        Value::Matrix(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|s| {
                    let pts: Vec<String> = s
                        .samples
                        .iter()
                        .map(|(t, v)| format!("[{},{}]", prom_ts(*t), json_str(&prom_float(*v))))
                        .collect();
                    format!(
                        "{{\"metric\":{},\"values\":[{}]}}",
                        prom_metric(&s.labels),
                        pts.join(",")
                    )
                })
                .collect();
            format!(
                "{{\"resultType\":\"matrix\",\"result\":[{}]}}",
                items.join(",")
            )
        }
        Value::Episodes(e) => {
            let items: Vec<String> = e
                .iter()
                .map(|e| {
                    let flags: Vec<String> = e.flags().iter().map(|f| json_str(f)).collect();
                    let measures: Vec<String> = e
                        .measures
                        .iter()
                        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(&prom_float(*v))))
                        .collect();
                    format!(
                        "{{\"metric\":{},\"start\":{},\"end\":{},\"flags\":[{}],\"measures\":{{{}}}}}",
                        prom_metric(&e.labels),
                        prom_ts(e.start),
                        prom_ts(e.end),
                        flags.join(","),
                        measures.join(",")
                    )
                })
                .collect();
            format!(
                "{{\"resultType\":\"episodes\",\"result\":[{}]}}",
                items.join(",")
            )
        }
    };
    format!(
        "{{\"status\":\"success\",\"data\":{data}{}}}",
        annotations(res)
    )
}

/// The Prometheus HTTP API body for a failed query.
pub fn prom_json_error(out: &mut impl Write, msg: &str) -> Result<()> {
    let typ = if msg.starts_with("parse error") {
        "bad_data"
    } else {
        "execution"
    };
    writeln!(
        out,
        "{{\"status\":\"error\",\"errorType\":\"{typ}\",\"error\":{}}}",
        json_str(msg)
    )?;
    Ok(())
}

fn json_num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| serde_json::Value::String(prom_float(v)))
}

fn labels_json(l: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        l.iter()
            .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
            .collect(),
    )
}

/// tsq's own JSON: `{"type": ..., "result": ...}` with ms timestamps and plain numbers.
pub fn tsq_json(res: &QueryResult) -> serde_json::Value {
    use serde_json::json;
    let result = match &res.value {
        Value::Scalar { t, v } => json!({"t": t, "v": json_num(*v)}),
        Value::String { t, s } => json!({"t": t, "v": s}),
        Value::Vector(v) => v
            .iter()
            .map(|s| json!({"labels": labels_json(&s.labels), "t": s.t, "v": json_num(s.v)}))
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let pts: Vec<serde_json::Value> = s
                    .samples
                    .iter()
                    .map(|(t, v)| json!([t, json_num(*v)]))
                    .collect();
                json!({"labels": labels_json(&s.labels), "samples": pts})
            })
            .collect(),
        Value::Episodes(e) => e
            .iter()
            .map(|e| {
                let measures: serde_json::Map<String, serde_json::Value> = e
                    .measures
                    .iter()
                    .map(|(k, v)| (k.clone(), json_num(*v)))
                    .collect();
                json!({"labels": labels_json(&e.labels), "start": e.start, "end": e.end,
                       "duration_ms": e.duration_ms(), "flags": e.flags(), "measures": measures})
            })
            .collect(),
    };
    json!({"type": res.value.type_name(), "result": result, "warnings": res.warnings, "infos": res.infos})
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Prints a result in the chosen format.
pub fn render(
    out: &mut impl Write,
    res: &QueryResult,
    format: OutputFormat,
    spec: &QuerySpec,
    svg: Option<&Path>,
) -> Result<()> {
    render_shaded(out, res, format, spec, svg, &[])
}

/// Prints a result in the chosen format; a chart also shades the `shade` episodes.
pub fn render_shaded(
    out: &mut impl Write,
    res: &QueryResult,
    format: OutputFormat,
    spec: &QuerySpec,
    svg: Option<&Path>,
    shade: &[tsq::exec::Episode],
) -> Result<()> {
    match format {
        OutputFormat::PromJson => writeln!(out, "{}", prom_json(res))?,
        OutputFormat::Json => writeln!(out, "{}", tsq_json(res))?,
        OutputFormat::Csv if matches!(res.value, Value::Episodes(_)) => {
            let Value::Episodes(eps) = &res.value else {
                unreachable!("matched above")
            };
            writeln!(out, "series,start,end,duration_s,flags,measures")?;
            for e in eps {
                writeln!(
                    out,
                    "{},{},{},{},{},{}",
                    csv_field(&e.labels.to_string()),
                    fmt_time(e.start),
                    fmt_time(e.end),
                    prom_float(e.duration_ms() as f64 / 1000.0),
                    e.flags().join(" "),
                    csv_field(&measures_text(e))
                )?;
            }
        }
        OutputFormat::Csv => {
            writeln!(out, "series,timestamp,value")?;
            // Rows are most of the output: written without allocating.
            let mut line = |name: &str, t: i64, v: f64| -> std::io::Result<()> {
                out.write_all(name.as_bytes())?;
                out.write_all(b",")?;
                match tsq::formats::rfc3339_ms_bytes(t) {
                    Some(b) => out.write_all(&b)?,
                    None => out.write_all(fmt_time(t).as_bytes())?,
                }
                if v.is_finite() {
                    writeln!(out, ",{v}")
                } else {
                    writeln!(out, ",{}", prom_float(v))
                }
            };
            match &res.value {
                // A series' name is quoted once for all its points.
                Value::Matrix(m) => {
                    for s in m {
                        let name = csv_field(&s.labels.to_string());
                        for &(t, v) in &s.samples {
                            line(&name, t, v)?;
                        }
                    }
                }
                other => {
                    for (labels, t, v) in rows(other) {
                        line(&csv_field(&labels), t, v)?;
                    }
                }
            }
        }
        OutputFormat::Table => table(out, res)?,
        OutputFormat::Chart => {
            crate::chart::render_terminal(out, res, spec, shade)?;
            if let Some(path) = svg {
                std::fs::write(path, crate::chart::render_svg(res, spec, shade)?)?;
                writeln!(out, "chart written to {}", path.display())?;
            }
        }
    }
    for w in &res.warnings {
        eprintln!("warning: {w}");
    }
    if format != OutputFormat::PromJson && format != OutputFormat::Json {
        for i in &res.infos {
            eprintln!("info: {i}");
        }
    }
    Ok(())
}

/// `name=value` pairs of an episode's measures, space-separated.
fn measures_text(e: &tsq::exec::Episode) -> String {
    let parts: Vec<String> = e
        .measures
        .iter()
        .map(|(k, v)| {
            if k.starts_with("first_")
                || k.starts_with("last_")
                || k == "held_since"
                || k == "active_since"
                || k == "active_at"
                || k.ends_with("_start")
                || k.ends_with("_end")
            {
                format!("{k}={}", fmt_time((v * 1000.0).round() as i64))
            } else {
                format!("{k}={}", prom_float(*v))
            }
        })
        .collect();
    parts.join(" ")
}

/// A duration in ms as `1h2m3s`.
pub fn fmt_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms.abs();
    if ms < 0 {
        out.push('-');
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    out
}

fn rows(v: &Value) -> Vec<(String, i64, f64)> {
    match v {
        Value::Scalar { t, v } => vec![("scalar".into(), *t, *v)],
        Value::String { .. } | Value::Episodes(_) => Vec::new(),
        Value::Vector(v) => v.iter().map(|s| (s.labels.to_string(), s.t, s.v)).collect(),
        Value::Matrix(m) => m
            .iter()
            .flat_map(|s| {
                let name = s.labels.to_string();
                s.samples.iter().map(move |(t, v)| (name.clone(), *t, *v))
            })
            .collect(),
    }
}

/// Width of a column holding `names` under the heading `SERIES`.
fn column_width(names: &[String]) -> usize {
    names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(6)
}

fn table(out: &mut impl Write, res: &QueryResult) -> Result<()> {
    match &res.value {
        Value::String { s, .. } => writeln!(out, "{s}")?,
        Value::Scalar { v, .. } => writeln!(out, "{}", prom_float(*v))?,
        Value::Vector(v) => {
            if v.is_empty() {
                writeln!(out, "(empty result)")?;
                return Ok(());
            }
            let names: Vec<String> = v.iter().map(|s| s.labels.to_string()).collect();
            let w = column_width(&names);
            writeln!(out, "{:<w$}  VALUE", "SERIES")?;
            for (n, s) in names.iter().zip(v) {
                writeln!(out, "{n:<w$}  {}", prom_float(s.v))?;
            }
        }
        Value::Matrix(m) => {
            if m.is_empty() {
                writeln!(out, "(empty result)")?;
                return Ok(());
            }
            for s in m {
                writeln!(out, "{}", s.labels)?;
                for (t, v) in &s.samples {
                    writeln!(out, "  {}  {}", fmt_time(*t), prom_float(*v))?;
                }
            }
        }
        Value::Episodes(eps) => {
            if eps.is_empty() {
                writeln!(out, "(no episodes)")?;
                return Ok(());
            }
            let names: Vec<String> = eps.iter().map(|e| e.labels.to_string()).collect();
            let w = column_width(&names);
            writeln!(
                out,
                "{:<w$}  {:<24}  {:<24}  {:>9}  FLAGS / MEASURES",
                "SERIES", "START", "END", "DURATION"
            )?;
            for (n, e) in names.iter().zip(eps) {
                let mut extra = e.flags().join(",");
                let m = measures_text(e);
                if !m.is_empty() {
                    if !extra.is_empty() {
                        extra.push_str("  ");
                    }
                    extra.push_str(&m);
                }
                writeln!(
                    out,
                    "{n:<w$}  {:<24}  {:<24}  {:>9}  {extra}",
                    fmt_time(e.start),
                    fmt_time(e.end),
                    fmt_duration(e.duration_ms()),
                )?;
            }
            writeln!(out, "{} episodes", eps.len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsq::exec::Sample;

    #[test]
    fn prom_json_matches_the_api_shape() {
        assert_eq!(prom_ts(1_435_781_451_781), "1435781451.781");
        assert_eq!(prom_ts(1_435_781_451_050), "1435781451.050");
        assert_eq!(prom_ts(5_000), "5");
        assert_eq!(prom_ts(-1_500), "-1.500");
        assert_eq!(prom_float(f64::INFINITY), "+Inf");
        assert_eq!(prom_float(1e21), "1000000000000000000000");
        assert_eq!(prom_float(0.1), "0.1");
        let res = QueryResult {
            value: Value::Vector(vec![Sample {
                labels: Labels::new([("__name__", "up"), ("job", "a\"b")]),
                t: 1000,
                v: 1.0,
            }]),
            warnings: vec![],
            infos: vec!["PromQL info: x".into()],
        };
        assert_eq!(
            prom_json(&res),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]},"infos":["PromQL info: x"]}"#
        );
    }
}
