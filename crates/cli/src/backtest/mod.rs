//! `tsq backtest`: replay Prometheus alerting and recording rules over the stored history,
//! and score them against known incidents (docs/cli.md, "Backtesting alert rules").

mod incidents;
mod replay;
mod report;
mod rules;
mod template;
mod yaml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::timearg::{parse_duration, parse_time};
pub use report::Format;

/// Options shared by `tsq backtest` and `tsq backtest diff`.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// First evaluation time of interest (RFC 3339, Unix seconds, now-7d).
    #[arg(long)]
    from: Option<String>,
    /// Last evaluation time of interest.
    #[arg(long)]
    to: Option<String>,
    /// Evaluation interval of groups that set none.
    #[arg(long, default_value = "1m")]
    interval: String,
    /// Incidents to score against: `tsq gen --truth` JSON, YAML, or `SELECTOR START END` lines.
    #[arg(long)]
    incidents: Option<PathBuf>,
    /// Keep only incidents of these kinds (comma-separated, e.g. error_burst,latency_shift).
    #[arg(long, value_delimiter = ',')]
    incident_kinds: Vec<String>,
    /// How long after an incident ends a firing still counts as detecting it (default: the
    /// rule's `for` plus its interval).
    #[arg(long)]
    incident_slack: Option<String>,
    /// Output format.
    #[arg(long, default_value = "table")]
    format: Format,
    /// PromQL semantics.
    #[arg(long, default_value = "promql3", value_parser = ["promql3", "prometheus-2.42"])]
    profile: String,
    /// Lookback delta for instant selectors.
    #[arg(long, default_value = "5m")]
    lookback: String,
}

/// Arguments of `tsq backtest`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BacktestArgs {
    #[command(subcommand)]
    command: Option<BacktestCommand>,
    /// Prometheus rule file(s) (repeat for several).
    #[arg(long, required = true)]
    rules: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Subcommand, Debug)]
enum BacktestCommand {
    /// Compare two versions of a rule file over the same history.
    #[command(
        after_help = "Example:\n  tsq backtest diff old.yml new.yml --from 2026-01-02T00:00:00Z --to 2026-01-09T00:00:00Z --incidents truth.json"
    )]
    Diff(DiffArgs),
}

/// Arguments of `tsq backtest diff`.
#[derive(Args, Debug)]
struct DiffArgs {
    /// The rule file before the change.
    old: PathBuf,
    /// The rule file after the change.
    new: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

struct Prepared {
    from: i64,
    to: i64,
    opts: replay::ReplayOptions,
    incidents: Option<Vec<incidents::Incident>>,
    slack: Option<i64>,
}

fn prepare(c: &CommonArgs) -> Result<Prepared> {
    let (Some(from), Some(to)) = (&c.from, &c.to) else {
        bail!("--from and --to are required");
    };
    let (from, to) = (parse_time(from)?, parse_time(to)?);
    if to < from {
        bail!("--to is before --from");
    }
    let interval = parse_duration(&c.interval)?;
    let incidents = c
        .incidents
        .as_deref()
        .map(|p| incidents::load(p, &c.incident_kinds))
        .transpose()?;
    if incidents.is_none() && !c.incident_kinds.is_empty() {
        bail!("--incident-kinds needs --incidents");
    }
    let slack = c
        .incident_slack
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    Ok(Prepared {
        from,
        to,
        opts: replay::ReplayOptions {
            from,
            to,
            default_interval: interval,
            engine: crate::query::engine(&c.profile, &c.lookback)?,
        },
        incidents,
        slack,
    })
}

fn load_rules(paths: &[PathBuf]) -> Result<rules::RuleFile> {
    let mut merged: Option<rules::RuleFile> = None;
    for p in paths {
        let f = rules::load(p)?;
        match &mut merged {
            None => merged = Some(f),
            Some(m) => {
                m.path = format!("{}, {}", m.path, f.path);
                m.groups.extend(f.groups);
            }
        }
    }
    merged.ok_or_else(|| anyhow::anyhow!("no rule file given"))
}

/// The per-rule summary table (as `tsq backtest` prints it first) of replaying the rule file
/// `rules_yaml` (named `name` in errors) over `db` from `from` to `to` at 1m, scored
/// against the incidents of a `tsq gen --truth` sidecar of the given kinds: what `tsq demo`
/// shows.
pub fn summary_table(
    db: &tsq::storage::Db,
    name: &str,
    rules_yaml: &str,
    (from, to): (i64, i64),
    truth_json: &str,
    kinds: &[&str],
) -> Result<String> {
    let file = rules::parse_str(name, rules_yaml)
        .map_err(|errs| anyhow::anyhow!("rule file errors:\n{}", errs.join("\n")))?;
    let opts = replay::ReplayOptions {
        from,
        to,
        default_interval: 60_000,
        engine: tsq::exec::Engine::default(),
    };
    let incidents = incidents::from_truth_json(truth_json, kinds)?;
    let outcomes = replay::replay(db, &file, &opts)?;
    let cx = report::Ctx {
        files: vec![name.to_string()],
        from,
        to,
        incidents: Some(&incidents),
        slack: None,
    };
    let summaries: Vec<report::Summary> =
        outcomes.iter().map(|o| report::summarize(o, &cx)).collect();
    Ok(report::table(
        &report::summary_rows(&outcomes, &summaries, true),
        "   ",
        false,
    ))
}

/// Runs `tsq backtest` (or `tsq backtest diff`).
pub fn run(db_path: &Path, args: BacktestArgs) -> Result<ExitCode> {
    match args.command {
        Some(BacktestCommand::Diff(d)) => diff(db_path, d),
        None => {
            let file = load_rules(&args.rules)?;
            let p = prepare(&args.common)?;
            let db = crate::open_ro(db_path)?;
            let outcomes = replay::replay(&db, &file, &p.opts)?;
            let cx = report::Ctx {
                files: args.rules.iter().map(|p| p.display().to_string()).collect(),
                from: p.from,
                to: p.to,
                incidents: p.incidents.as_deref(),
                slack: p.slack,
            };
            print!("{}", report::render(&outcomes, &cx, args.common.format));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn diff(db_path: &Path, d: DiffArgs) -> Result<ExitCode> {
    let old = load_rules(std::slice::from_ref(&d.old))?;
    let new = load_rules(std::slice::from_ref(&d.new))?;
    let p = prepare(&d.common)?;
    let db = crate::open_ro(db_path)?;
    let a = replay::replay(&db, &old, &p.opts)?;
    let b = replay::replay(&db, &new, &p.opts)?;
    let cx = report::Ctx {
        files: vec![d.old.display().to_string(), d.new.display().to_string()],
        from: p.from,
        to: p.to,
        incidents: p.incidents.as_deref(),
        slack: p.slack,
    };
    print!("{}", report::render_diff(&a, &b, &cx, d.common.format));
    Ok(ExitCode::SUCCESS)
}
