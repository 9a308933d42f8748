//! `tsq demo`: generate the workload dataset and walk through what tsq answers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use tsq::exec::{Engine, Value};
use tsq::formats::gen::{self, WorkloadParams};
use tsq::storage::Db;

use crate::output::{self, OutputFormat};
use crate::query::{evaluate, QuerySpec};
use crate::timearg::{fmt_time, now_ms};

/// Arguments of `tsq demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Days of workload data to generate.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Seed of the dataset.
    #[arg(long, default_value_t = gen::DEFAULT_SEED)]
    seed: u64,
}

fn has_data(p: &Path) -> bool {
    p.join("MANIFEST").exists()
        || std::fs::read_dir(p.join("wal")).is_ok_and(|mut d| d.next().is_some())
}

fn step(n: usize, title: &str, why: &str) {
    println!("\n━━ {n}. {title}\n   {why}");
}

fn show(
    db: &Db,
    engine: &Engine,
    expr: &str,
    range: Option<(i64, i64, i64)>,
    at: i64,
    format: OutputFormat,
) -> Result<()> {
    let shown = match range {
        Some((s, e, st)) => format!(
            "tsq query --start {} --end {} --step {}s --format {} '{expr}'",
            fmt_time(s),
            fmt_time(e),
            st / 1000,
            <OutputFormat as clap::ValueEnum>::to_possible_value(&format)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        ),
        None => format!("tsq query --time {} '{expr}'", fmt_time(at)),
    };
    println!("   $ {shown}");
    let spec = QuerySpec {
        expr: expr.to_string(),
        range,
        time: at,
    };
    let started = Instant::now();
    let res = evaluate(db, engine, &spec)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut out = std::io::stdout().lock();
    output::render(&mut out, &res, format, &spec, None)?;
    let n = match &res.value {
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.len(),
        _ => 1,
    };
    println!("   ({n} series, {ms:.1} ms)");
    Ok(())
}

pub fn run(db_path: &Path, args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let dir: PathBuf = if has_data(db_path) {
        let d = std::env::temp_dir().join(format!("tsq-demo-{}", std::process::id()));
        println!(
            "{} already holds data; the demo uses a new database at {} (kept, so you can query it)",
            db_path.display(),
            d.display()
        );
        d
    } else {
        db_path.to_path_buf()
    };
    // End the data at the current hour so that `now-1h`-style times work afterwards.
    let hour = 3_600_000;
    let end = now_ms() / hour * hour;
    let params = WorkloadParams {
        days: args.days,
        start_ms: end - i64::from(args.days) * 86_400_000,
        seed: args.seed,
        ..WorkloadParams::default()
    };
    let ds = gen::workload(&params);
    println!(
        "tsq demo: {} services x {} instances, {} days at 15 s, into {}",
        params.services,
        params.instances,
        args.days,
        dir.display()
    );
    let db = Db::open(&dir)?;
    let (n, secs) = crate::gen::load_dataset(&db, &ds, 250_000)?;
    for (name, meta) in ds.metadata() {
        db.set_metadata(name, meta.clone())?;
    }
    db.compact()?;
    let info = db.info();
    let bytes: u64 = info.blocks.iter().map(|b| b.2.bytes).sum();
    println!(
        "stored {n} samples of {} series in {secs:.2} s ({:.1} M samples/s); {:.2} bytes/sample on disk after compaction",
        ds.series().len(),
        n as f64 / secs / 1e6,
        bytes as f64 / n as f64
    );
    let engine = Engine::default();
    let t = ds.end_ms() - 15_000;
    let day = (t - 86_400_000, t, 600_000);

    step(1, "What is stored", "Each series is a metric name plus labels; metadata says which metrics are KPIs (outcomes) and which are health signals.");
    show(
        &db,
        &engine,
        "count by (__name__) ({__name__=~\".+\"})",
        None,
        t,
        OutputFormat::Table,
    )?;

    step(
        2,
        "Traffic per service",
        "Counters become rates; the daily rhythm is the first thing a baseline has to learn.",
    );
    show(
        &db,
        &engine,
        "sum by (service) (rate(http_requests_total[5m]))",
        None,
        t,
        OutputFormat::Table,
    )?;
    show(
        &db,
        &engine,
        "sum(rate(http_requests_total[5m]))",
        Some(day),
        t,
        OutputFormat::Chart,
    )?;

    step(
        3,
        "Is the error ratio normal?",
        "A KPI: the share of 5xx answers per service over the last hour.",
    );
    show(&db, &engine, "sum by (service) (rate(http_requests_total{code=\"5xx\"}[1h])) / sum by (service) (rate(http_requests_total[1h]))", None, t, OutputFormat::Table)?;

    let svc = ds
        .series()
        .iter()
        .find_map(|s| s.labels.get("service").map(str::to_string))
        .unwrap_or_default();
    step(
        4,
        "What is normal for latency",
        "A robust baseline band: median -/+ 3 x 1.4826 x MAD of the last day, per step; and the same hour on the previous days.",
    );
    show(
        &db,
        &engine,
        &format!(
            "band_over_time(avg(request_latency_seconds{{service=\"{svc}\"}})[1d:1m], 3, \"mad\")"
        ),
        Some(day),
        t,
        OutputFormat::Chart,
    )?;
    show(
        &db,
        &engine,
        &format!("quantile without(season) (0.5, avg_over_time(request_latency_seconds{{service=\"{svc}\"}}[1h] seasons(1d, 6, \"by_season\")))"),
        None,
        t,
        OutputFormat::Table,
    )?;

    step(
        5,
        "What deviates",
        "Robust z-scores: latency against its own last day (median and MAD), and request rates that are outliers among the instances of their service.",
    );
    show(
        &db,
        &engine,
        "topk(5, abs(zscore(request_latency_seconds, request_latency_seconds[1d], \"mad\")))",
        None,
        t,
        OutputFormat::Table,
    )?;
    show(
        &db,
        &engine,
        "outliers_mad(3, sum by (service, instance) (rate(http_requests_total[5m]))) by (service)",
        None,
        t,
        OutputFormat::Table,
    )?;

    step(
        6,
        "When were outcomes at risk",
        "Restarts reset counters; deploys change build_info. Count them over the week.",
    );
    show(
        &db,
        &engine,
        "sum by (service) (resets(http_requests_total{code=\"2xx\"}[7d]))",
        None,
        t,
        OutputFormat::Table,
    )?;
    show(
        &db,
        &engine,
        "count by (service) (count_over_time(build_info[7d]))",
        None,
        t,
        OutputFormat::Table,
    )?;

    println!("\nGround truth of this dataset: {} injected events (deploys, restarts, error bursts, latency anomalies); `tsq gen --dataset workload --truth truth.json` writes them.", ds.ground_truth().len());
    println!("Try it yourself:\n  tsq --db {} query --start now-1d --end now --step 10m --format chart 'sum by (service) (rate(http_requests_total{{code=\"5xx\"}}[5m]))'\n  tsq --db {} repl", dir.display(), dir.display());
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db.close()?;
    Ok(ExitCode::SUCCESS)
}
