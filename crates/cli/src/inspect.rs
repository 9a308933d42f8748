//! Looking inside the database: series, labels, inspect, analyze, dump, check, compact,
//! delete, meta.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use tsq::storage::{codec, MatchOp, Matcher, MetricKind, MetricMeta};

use crate::timearg::{fmt_time, parse_time};

/// Parses a series selector (`up`, `{job="a"}`, `up{job=~"a.*"}`) into storage matchers.
pub fn matchers(sel: &str) -> Result<Vec<Matcher>> {
    let parsed = tsq::parser::parse_matchers(sel).map_err(|e| {
        anyhow!(
            "invalid selector at {}:{}: {}\n{}",
            e.line,
            e.column,
            e.message,
            e.render(sel)
        )
    })?;
    parsed
        .into_iter()
        .map(|m| {
            let op = match m.op {
                tsq::parser::MatchOp::Equal => MatchOp::Equal,
                tsq::parser::MatchOp::NotEqual => MatchOp::NotEqual,
                tsq::parser::MatchOp::Regex => MatchOp::Regex,
                tsq::parser::MatchOp::NotRegex => MatchOp::NotRegex,
            };
            Matcher::new(op, m.name, m.value, true).map_err(|e| anyhow!("invalid regex: {e}"))
        })
        .collect()
}

/// Arguments of `tsq series`.
#[derive(Args, Debug)]
pub struct SeriesArgs {
    /// Selector; all series when omitted.
    selector: Option<String>,
    /// Only the series of KPI metrics.
    #[arg(long)]
    kpi: bool,
}

pub fn series(db_path: &Path, args: SeriesArgs) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let m = match &args.selector {
        Some(s) => matchers(s)?,
        None => vec![],
    };
    let meta = db.metadata();
    let mut out = std::io::stdout().lock();
    let mut n = 0;
    for l in db.series(&m)? {
        let kind = l
            .metric_name()
            .and_then(|name| meta.get(name))
            .map(|m| m.kind)
            .unwrap_or_default();
        if args.kpi && kind != MetricKind::Kpi {
            continue;
        }
        writeln!(out, "{l}")?;
        n += 1;
    }
    eprintln!("{n} series");
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tsq labels`.
#[derive(Args, Debug)]
pub struct LabelsArgs {
    /// A label name: list its values instead of the names.
    name: Option<String>,
}

pub fn labels(db_path: &Path, args: LabelsArgs) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let list = match &args.name {
        Some(n) => db.label_values(n)?,
        None => db.label_names()?,
    };
    let mut out = std::io::stdout().lock();
    for v in list {
        writeln!(out, "{v}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1048576.0 {
        format!("{:.1} MiB", b / 1048576.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

pub fn inspect(db_path: &Path) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let info = db.info();
    let mut out = std::io::stdout().lock();
    writeln!(out, "database {}", db_path.display())?;
    writeln!(out, "\nblocks ({}):", info.blocks.len())?;
    writeln!(
        out,
        "  {:<22} {:<24} {:<24} {:>10} {:>8} {:>10} {:>8}",
        "FILE", "FROM", "TO", "SAMPLES", "CHUNKS", "SIZE", "B/SAMPLE"
    )?;
    let (mut samples, mut bytes) = (0u64, 0u64);
    for (name, _, s) in &info.blocks {
        samples += s.n_samples;
        bytes += s.bytes;
        writeln!(
            out,
            "  {:<22} {:<24} {:<24} {:>10} {:>8} {:>10} {:>8.3}",
            name,
            fmt_time(s.min_t),
            fmt_time(s.max_t),
            s.n_samples,
            s.n_chunks,
            human(s.bytes),
            s.bytes as f64 / s.n_samples.max(1) as f64
        )?;
    }
    writeln!(
        out,
        "  total: {samples} samples, {}, {:.3} bytes/sample",
        human(bytes),
        bytes as f64 / samples.max(1) as f64
    )?;
    writeln!(
        out,
        "\nhead: {} series, {} samples",
        info.head_series, info.head_samples
    )?;
    if let Some((a, b)) = info.head_range {
        writeln!(out, "  from {} to {}", fmt_time(a), fmt_time(b))?;
    }
    writeln!(out, "\nwal segments ({}):", info.wal_segments.len())?;
    for (name, len) in &info.wal_segments {
        writeln!(out, "  {name}  {}", human(*len))?;
    }
    // Codec usage across blocks.
    let mut codecs: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for b in db.blocks() {
        for s in b.all_series()? {
            for m in s.chunks {
                let data = b.chunk_bytes(m)?;
                let ci =
                    codec::chunk_info(data).map_err(|e| anyhow!("{}: {e}", b.path().display()))?;
                let e = codecs
                    .entry((ci.ts_codec.to_string(), ci.value_codec.to_string()))
                    .or_default();
                e.0 += 1;
                e.1 += ci.count as u64;
            }
        }
    }
    if !codecs.is_empty() {
        writeln!(out, "\nchunk codecs (timestamps / values):")?;
        for ((t, v), (chunks, samples)) in codecs {
            writeln!(
                out,
                "  {t:<14} / {v:<18} {chunks:>8} chunks {samples:>12} samples"
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tsq analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// How many metrics and labels to list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Default)]
struct Acc {
    series: u64,
    chunks: u64,
    samples: u64,
    ts_bytes: u64,
    value_bytes: u64,
}

pub fn analyze(db_path: &Path, args: AnalyzeArgs) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let mut by_metric: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_ts_codec: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_value_codec: BTreeMap<String, Acc> = BTreeMap::new();
    let mut label_values: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut file_bytes = 0u64;
    let mut total = Acc::default();
    let mut seen = std::collections::HashSet::new();
    for b in db.blocks() {
        file_bytes += b.stats().bytes;
        for s in b.all_series()? {
            let metric = s.labels.metric_name().unwrap_or("").to_string();
            if seen.insert(s.labels.clone()) {
                by_metric.entry(metric.clone()).or_default().series += 1;
                total.series += 1;
                for l in s.labels.iter() {
                    label_values
                        .entry(l.name.clone())
                        .or_default()
                        .insert(l.value.clone());
                }
            }
            for m in s.chunks {
                let ci = codec::chunk_info(b.chunk_bytes(m)?)
                    .map_err(|e| anyhow!("{}: {e}", b.path().display()))?;
                for acc in [
                    by_metric.entry(metric.clone()).or_default(),
                    by_ts_codec.entry(ci.ts_codec.to_string()).or_default(),
                    by_value_codec
                        .entry(ci.value_codec.to_string())
                        .or_default(),
                    &mut total,
                ] {
                    acc.chunks += 1;
                    acc.samples += ci.count as u64;
                    acc.ts_bytes += ci.ts_bytes as u64;
                    acc.value_bytes += ci.value_bytes as u64;
                }
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let per = |a: &Acc, b: u64| b as f64 / a.samples.max(1) as f64;
    writeln!(
        out,
        "blocks: {} series, {} chunks, {} samples",
        total.series, total.chunks, total.samples
    )?;
    writeln!(
        out,
        "bytes/sample: {:.3} on disk (files, index included), {:.3} timestamps + {:.3} values in chunks",
        file_bytes as f64 / total.samples.max(1) as f64,
        per(&total, total.ts_bytes),
        per(&total, total.value_bytes)
    )?;
    writeln!(out, "\nby metric (bytes/sample: timestamps, values):")?;
    let mut metrics: Vec<(&String, &Acc)> = by_metric.iter().collect();
    metrics.sort_by_key(|m| std::cmp::Reverse(m.1.ts_bytes + m.1.value_bytes));
    writeln!(
        out,
        "  {:<40} {:>8} {:>12} {:>8} {:>8} {:>10}",
        "METRIC", "SERIES", "SAMPLES", "TS B/S", "VAL B/S", "BYTES"
    )?;
    for (name, a) in metrics.iter().take(args.limit) {
        writeln!(
            out,
            "  {:<40} {:>8} {:>12} {:>8.3} {:>8.3} {:>10}",
            name,
            a.series,
            a.samples,
            per(a, a.ts_bytes),
            per(a, a.value_bytes),
            a.ts_bytes + a.value_bytes
        )?;
    }
    for (title, map, pick) in [
        ("timestamp codec", &by_ts_codec, true),
        ("value codec", &by_value_codec, false),
    ] {
        writeln!(out, "\nby {title}:")?;
        for (name, a) in map {
            let b = if pick { a.ts_bytes } else { a.value_bytes };
            writeln!(
                out,
                "  {:<24} {:>8} chunks {:>12} samples {:>8.3} bytes/sample",
                name,
                a.chunks,
                a.samples,
                per(a, b)
            )?;
        }
    }
    writeln!(out, "\nlabel cardinality (distinct values):")?;
    let mut labels: Vec<(&String, usize)> =
        label_values.iter().map(|(k, v)| (k, v.len())).collect();
    labels.sort_by_key(|l| std::cmp::Reverse(l.1));
    for (name, n) in labels.into_iter().take(args.limit) {
        writeln!(out, "  {name:<40} {n:>8}")?;
    }
    let head = db.info();
    if head.head_samples > 0 {
        writeln!(
            out,
            "\n(head: {} samples not yet in blocks; `tsq compact` writes them)",
            head.head_samples
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--start` / `--end`, both optional.
#[derive(Args, Debug)]
pub struct TimeRange {
    /// From this time (default: the beginning).
    #[arg(long)]
    start: Option<String>,
    /// Up to this time (default: the end).
    #[arg(long)]
    end: Option<String>,
}

impl TimeRange {
    /// The bounds in ms, open ends as the extremes of i64.
    fn bounds(&self) -> Result<(i64, i64)> {
        let start = self.start.as_deref().map(parse_time).transpose()?;
        let end = self.end.as_deref().map(parse_time).transpose()?;
        Ok((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)))
    }
}

/// Arguments of `tsq dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Selector; every series when omitted.
    selector: Option<String>,
    #[command(flatten)]
    range: TimeRange,
}

pub fn dump(db_path: &Path, args: DumpArgs) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let m = match &args.selector {
        Some(s) => matchers(s)?,
        None => vec![Matcher::new(MatchOp::Regex, "__name__", ".+", true).expect("valid regex")],
    };
    let (start, end) = args.range.bounds()?;
    let mut series = db.select(&m, start, end)?;
    // OpenMetrics wants each family's samples together.
    series.sort_by(|a, b| {
        a.labels
            .metric_name()
            .cmp(&b.labels.metric_name())
            .then(a.labels.cmp(&b.labels))
    });
    let meta = db.metadata();
    let stdout = std::io::stdout().lock();
    let mut w = tsq::formats::OpenMetricsWriter::new(std::io::BufWriter::new(stdout));
    let mut current: Option<String> = None;
    for s in &series {
        let name = s.labels.metric_name().unwrap_or("").to_string();
        if current.as_deref() != Some(&name) {
            w.family(&name, meta.get(&name))?;
            current = Some(name);
        }
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            w.sample(&s.labels, *t, *v)?;
        }
    }
    w.finish()?.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn check(db_path: &Path) -> Result<ExitCode> {
    let db = match crate::open_ro(db_path) {
        Ok(db) => db,
        Err(e) if format!("{e:#}").contains("MANIFEST") => {
            return Err(e.context(
                "the manifest is damaged or missing; `tsq repair` rebuilds it from the blocks",
            ));
        }
        Err(e) => return Err(e),
    };
    let problems = db.check();
    let info = db.info();
    if problems.is_empty() {
        println!(
            "ok: {} blocks and {} WAL segments verified",
            info.blocks.len(),
            info.wal_segments.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("damaged: {p}");
        }
        println!("{} problems found", problems.len());
        Ok(ExitCode::FAILURE)
    }
}

pub fn repair(db_path: &Path, force: bool) -> Result<ExitCode> {
    if !db_path.join("blocks").exists() && !db_path.join("MANIFEST").exists() {
        anyhow::bail!("no database at {}", db_path.display());
    }
    let r = tsq::storage::Db::repair(db_path, force)?;
    if r.already_intact {
        println!("the manifest is intact and lists only existing blocks: nothing to repair (--force rebuilds it anyway)");
        return Ok(ExitCode::SUCCESS);
    }
    let samples: u64 = r.kept.iter().map(|k| k.2).sum();
    println!(
        "manifest rebuilt: {} blocks listed ({samples} samples)",
        r.kept.len()
    );
    for (name, problem) in &r.moved {
        println!("damaged block moved to damaged/{name}: {problem}");
    }
    if let Some(p) = &r.old_manifest {
        println!("previous manifest kept as {}", p.display());
    }
    println!("not recoverable from blocks: deletions (tombstones) not yet compacted away and metric metadata of the old manifest; the WAL replays at the next open");
    Ok(if r.moved.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn compact(db_path: &Path) -> Result<ExitCode> {
    let db = crate::open_rw(db_path)?;
    let before = db.info().blocks.len();
    db.compact()?;
    let info = db.info();
    println!(
        "compacted: {before} blocks before, {} after",
        info.blocks.len()
    );
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tsq delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Which series (a selector with at least one matcher).
    selector: String,
    #[command(flatten)]
    range: TimeRange,
}

pub fn delete(db_path: &Path, args: DeleteArgs) -> Result<ExitCode> {
    let db = crate::open_rw(db_path)?;
    let m = matchers(&args.selector)?;
    let (start, end) = args.range.bounds()?;
    let n = db.series(&m)?.len();
    db.delete(&m, start, end).context("deleting")?;
    println!("deleted samples of {n} series (space is reclaimed at the next compaction)");
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tsq meta`.
#[derive(Args, Debug)]
pub struct MetaArgs {
    /// The metric; all metrics when omitted.
    metric: Option<String>,
    /// Mark the metric as a KPI (an outcome) or a health signal.
    #[arg(long, value_parser = ["kpi", "health"])]
    kind: Option<String>,
    /// Set the unit.
    #[arg(long)]
    unit: Option<String>,
    /// Set the help text.
    #[arg(long)]
    help_text: Option<String>,
}

pub fn meta(db_path: &Path, args: MetaArgs) -> Result<ExitCode> {
    let setting = args.kind.is_some() || args.unit.is_some() || args.help_text.is_some();
    if setting {
        let metric = args
            .metric
            .as_deref()
            .ok_or_else(|| anyhow!("name the metric to change"))?;
        let db = crate::open_rw(db_path)?;
        let mut m: MetricMeta = db.metadata().get(metric).cloned().unwrap_or_default();
        if let Some(k) = &args.kind {
            m.kind = if k == "kpi" {
                MetricKind::Kpi
            } else {
                MetricKind::Health
            };
        }
        if let Some(u) = args.unit {
            m.unit = u;
        }
        if let Some(h) = args.help_text {
            m.help = h;
        }
        db.set_metadata(metric, m)?;
        db.close()?;
    }
    let db = crate::open_ro(db_path)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<40} {:<10} {:<8} {:<10} HELP",
        "METRIC", "TYPE", "KIND", "UNIT"
    )?;
    for (name, m) in db.metadata() {
        if args.metric.as_deref().is_some_and(|x| x != name) {
            continue;
        }
        writeln!(
            out,
            "{:<40} {:<10} {:<8} {:<10} {}",
            name,
            m.metric_type.as_str(),
            m.kind.as_str(),
            m.unit,
            m.help
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
