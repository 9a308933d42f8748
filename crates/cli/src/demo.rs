//! `tsq demo`: generate the workload dataset and walk through what tsq answers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use tsq::exec::{Engine, Episode, QueryResult, Value};
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

/// The rule file of the demo's backtest step (both versions of one alert, side by side).
const DEMO_RULES: &str = r#"groups:
  - name: errors
    rules:
      - alert: ErrorRatioPerInstance
        expr: |
          sum by (service, instance) (rate(http_requests_total{code="5xx"}[2m]))
            / sum by (service, instance) (rate(http_requests_total[2m])) > 0.02
        for: 1m
      - alert: ErrorRatioPerService
        expr: |
          sum by (service) (rate(http_requests_total{code="5xx"}[5m]))
            / sum by (service) (rate(http_requests_total[5m])) > 0.03
        for: 5m
        keep_firing_for: 5m
"#;

fn step(n: usize, title: &str, why: &str) {
    println!("\n━━ {n}. {title}\n   {why}");
}

/// The `tsq query` command line that asks `expr` as the demo does.
fn command_line(
    expr: &str,
    range: Option<(i64, i64, i64)>,
    at: i64,
    format: OutputFormat,
) -> String {
    let fmt = <OutputFormat as clap::ValueEnum>::to_possible_value(&format)
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let fmt = if format == OutputFormat::Table {
        String::new()
    } else {
        format!(" --format {fmt}")
    };
    match range {
        Some((s, e, st)) => format!(
            "tsq query --start {} --end {} --step {}s{fmt} '{expr}'",
            fmt_time(s),
            fmt_time(e),
            st / 1000,
        ),
        None => format!("tsq query --time {}{fmt} '{expr}'", fmt_time(at)),
    }
}

/// Prints how many series `res` holds (the episodes table counts its own) and how long the
/// query took.
fn footer(res: &QueryResult, ms: f64) {
    match &res.value {
        Value::Vector(v) => println!("   ({} series, {ms:.1} ms)", v.len()),
        Value::Matrix(m) => println!("   ({} series, {ms:.1} ms)", m.len()),
        _ => println!("   ({ms:.1} ms)"),
    }
}

fn show(
    db: &Db,
    engine: &Engine,
    expr: &str,
    range: Option<(i64, i64, i64)>,
    at: i64,
    format: OutputFormat,
) -> Result<QueryResult> {
    println!("   $ {}", command_line(expr, range, at, format));
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
    drop(out);
    footer(&res, ms);
    Ok(res)
}

/// Draws an instant query's result again, as `tsq query --format FORMAT` would.
fn show_again(res: &QueryResult, expr: &str, at: i64, format: OutputFormat) -> Result<()> {
    println!("   $ {}", command_line(expr, None, at, format));
    let spec = QuerySpec {
        expr: expr.to_string(),
        range: None,
        time: at,
    };
    output::render(&mut std::io::stdout().lock(), res, format, &spec, None)
}

/// A range query drawn as a chart with the episodes of `shade` (evaluated at the range's end)
/// shaded over it: `tsq query --format chart --shade SHADE EXPR`.
fn show_shaded(
    db: &Db,
    engine: &Engine,
    expr: &str,
    shade: &str,
    range: (i64, i64, i64),
) -> Result<()> {
    let cmd = command_line(expr, Some(range), range.1, OutputFormat::Chart);
    let cmd = cmd.replacen(
        " --format chart",
        &format!(" --format chart --shade '{shade}'"),
        1,
    );
    println!("   $ {cmd}");
    let started = Instant::now();
    let eps = crate::query::evaluate_shade(db, engine, shade, range.1)?;
    let spec = QuerySpec {
        expr: expr.to_string(),
        range: Some(range),
        time: range.1,
    };
    let res = evaluate(db, engine, &spec)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut out = std::io::stdout().lock();
    output::render_shaded(&mut out, &res, OutputFormat::Chart, &spec, None, &eps)?;
    drop(out);
    println!("   ({} episodes shaded, {ms:.1} ms)", eps.len());
    Ok(())
}

/// The latest-starting episode of a result.
fn latest(res: &QueryResult) -> Option<&Episode> {
    match &res.value {
        Value::Episodes(e) => e.iter().max_by_key(|e| e.start),
        _ => None,
    }
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

    // Episodes: when something held, as time ranges.
    let grid = format!("[{}d:1m]", args.days);
    let above = "avg by (service) (request_latency_seconds) > 1.3 * avg by (service) (quantile_over_time(0.5, request_latency_seconds[1d]))";
    step(
        7,
        "When was latency above its baseline?",
        "An episode is a time range during which a condition held. Here: per service, mean latency above 1.3 x its median of the last day, checked every minute over the whole data, kept when it lasted 10 minutes.",
    );
    let above_q = format!("episodes(({above}){grid}, 10m)");
    let res = show(&db, &engine, &above_q, None, t, OutputFormat::Table)?;
    show_again(&res, &above_q, t, OutputFormat::Chart)?;

    step(
        8,
        "What followed a restart?",
        "Patterns match the steps of a grid in order, like a regular expression over time. sequence: a restart (up was 0 in the last minute), then latency above its baseline for 10 minutes, within 30 minutes. pattern: a restart, then 5xx above 3 % for 5 minutes or more, then back under 1 %, within 2 hours.",
    );
    let after_restart = format!(
        "sequence(min_over_time(up[1m]) == 0, avg_over_time(request_latency_seconds[5m]) > 1.3 * quantile_over_time(0.5, request_latency_seconds[1d]) for 10m) by (service) {grid} within 30m"
    );
    let seq = show(&db, &engine, &after_restart, None, t, OutputFormat::Table)?;
    let ratio = "sum by (service) (rate(http_requests_total{code=\"5xx\"}[2m])) / sum by (service) (rate(http_requests_total[2m]))";
    show(
        &db,
        &engine,
        &format!("pattern(\"R+ .{{0,2}} E{{5,}} N\", R: min by (service) (min_over_time(up[1m])) == 0, E: {ratio} > 0.03, N: {ratio} < 0.01) by (service) {grid} within 2h"),
        None,
        t,
        OutputFormat::Table,
    )?;

    step(
        9,
        "Seeing it",
        "The latest of those restarts: the service's mean latency over 12 hours, with its episodes above the baseline shaded (--shade takes any query that returns episodes).",
    );
    match latest(&seq).or_else(|| latest(&res)) {
        Some(e) => {
            let svc = e.labels.get("service").unwrap_or_default().to_string();
            let end = (e.start + 6 * 3_600_000).min(t) / 60_000 * 60_000;
            let range = (end - 12 * 3_600_000, end, 120_000);
            let sel = format!("request_latency_seconds{{service=\"{svc}\"}}");
            let shade = format!(
                "episodes((avg by (service) ({sel}) > 1.3 * avg by (service) (quantile_over_time(0.5, {sel}[1d])))[1d:1m], 10m)"
            );
            show_shaded(
                &db,
                &engine,
                &format!("avg by (service) ({sel})"),
                &shade,
                range,
            )?;
        }
        None => println!("   (no episodes in this data to draw)"),
    }

    step(
        10,
        "How would these alert rules have behaved?",
        "`tsq backtest` replays Prometheus rule files over the history, exactly as the rule engine would, and scores every alert against the dataset's injected error bursts and latency shifts (true/false positives, misses, time to detect). Two versions of an error-ratio alert: a per-instance threshold with a short `for`, and a per-service one that waits 5 minutes and keeps firing through short dips.",
    );
    let rules = DEMO_RULES;
    let from = ds.start_ms() + 86_400_000;
    let to = ds.end_ms() - 60_000;
    println!(
        "   $ tsq backtest --rules rules.yml --from {} --to {} --incidents truth.json --incident-kinds error_burst",
        fmt_time(from),
        fmt_time(to)
    );
    for line in rules.lines() {
        println!("   | {line}");
    }
    let truth = serde_json::to_string(&ds.sidecar_json())?;
    let started_bt = Instant::now();
    let table = crate::backtest::summary_table(
        &db,
        "rules.yml",
        rules,
        (from, to),
        &truth,
        &["error_burst"],
    )?;
    print!("{table}");
    println!(
        "   ({:.1} ms; `tsq backtest diff old.yml new.yml` compares two versions side by side)",
        started_bt.elapsed().as_secs_f64() * 1000.0
    );

    println!("\nGround truth of this dataset: {} injected events (deploys, restarts, error bursts, latency anomalies); `tsq gen --dataset workload --truth truth.json` writes them.", ds.ground_truth().len());
    println!("Try it yourself:\n  tsq --db {} query --start now-1d --end now --step 10m --format chart 'sum by (service) (rate(http_requests_total{{code=\"5xx\"}}[5m]))'\n  tsq --db {} query --start now-1d --end now --format chart --shade 'episodes((min(min_over_time(up[1m])) == 0)[1d:1m])' 'sum(rate(http_requests_total{{code=\"5xx\"}}[5m]))'\n  tsq --db {} repl", dir.display(), dir.display(), dir.display());
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db.close()?;
    Ok(ExitCode::SUCCESS)
}
