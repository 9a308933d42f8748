//! `tsq query` and `tsq test`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use tsq::exec::{Engine, EngineOptions, Episode, Profile, QueryResult, Value};

use crate::output::{self, OutputFormat};
use crate::timearg::{now_ms, parse_duration, parse_time};

/// Arguments of `tsq query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The PromQL expression.
    expr: String,
    /// Evaluation time of an instant query (default: now).
    #[arg(long, conflicts_with_all = ["start", "end"])]
    time: Option<String>,
    /// Start of a range query.
    #[arg(long, requires = "end")]
    start: Option<String>,
    /// End of a range query.
    #[arg(long, requires = "start")]
    end: Option<String>,
    /// Step of a range query (default: range / 250, at least 1s).
    #[arg(long)]
    step: Option<String>,
    /// Output format.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    /// PromQL semantics.
    #[arg(long, default_value = "promql3", value_parser = ["promql3", "prometheus-2.42"])]
    profile: String,
    /// Lookback delta for instant selectors.
    #[arg(long, default_value = "5m")]
    lookback: String,
    /// Write the chart as SVG to this file (with --format chart).
    #[arg(long, visible_alias = "svg")]
    out: Option<PathBuf>,
    /// An episodes query whose episodes are shaded over the chart (with --format chart): it
    /// is evaluated as an instant query at the end of the range. Without --start/--end the
    /// range ends at --time (default now) and begins a little before the first episode.
    #[arg(long, value_name = "EPISODES_QUERY")]
    shade: Option<String>,
}

/// How a query is asked.
pub struct QuerySpec {
    /// The expression.
    pub expr: String,
    /// `(start, end, step)` of a range query, ms; `None` for an instant query.
    pub range: Option<(i64, i64, i64)>,
    /// Evaluation time of an instant query, ms.
    pub time: i64,
}

pub fn engine(profile: &str, lookback: &str) -> Result<Engine> {
    let profile: Profile = profile.parse().map_err(|e: String| anyhow!(e))?;
    let opts = EngineOptions {
        profile,
        lookback_delta_ms: parse_duration(lookback)?,
        ..EngineOptions::default()
    };
    Ok(Engine::new(opts))
}

/// Runs a query, rendering parse errors with a caret under the column.
pub fn evaluate(db: &tsq::storage::Db, engine: &Engine, spec: &QuerySpec) -> Result<QueryResult> {
    let expr = match tsq::parser::parse(&spec.expr) {
        Ok(e) => e,
        Err(e) => bail!(
            "parse error at {}:{}: {}\n{}",
            e.line,
            e.column,
            e.message,
            e.render(&spec.expr)
        ),
    };
    let res = match spec.range {
        Some((start, end, step)) => engine.range_query_expr(db, &expr, start, end, step),
        None => engine.instant_query_expr(db, &expr, spec.time),
    };
    res.map_err(|e| anyhow!("{e}"))
}

/// Evaluates `expr` at `t` as the episodes to shade over a chart (an error if it does not
/// return episodes).
pub fn evaluate_shade(
    db: &tsq::storage::Db,
    engine: &Engine,
    expr: &str,
    t: i64,
) -> Result<Vec<Episode>> {
    let spec = QuerySpec {
        expr: expr.to_string(),
        range: None,
        time: t,
    };
    let res = evaluate(db, engine, &spec).map_err(|e| anyhow!("--shade: {e}"))?;
    match res.value {
        Value::Episodes(e) => Ok(e),
        v => bail!(
            "--shade needs a query that returns episodes (episodes, held_for, pattern, sequence, ...), not a {}",
            v.type_name()
        ),
    }
}

/// The range of a shaded chart asked without --start/--end: it ends at `t` and begins a
/// tenth of the span before the first episode (an hour before `t` without episodes), with
/// the default step.
pub fn shade_range(eps: &[Episode], t: i64) -> (i64, i64, i64) {
    let first = eps.iter().map(|e| e.start).min().unwrap_or(t).min(t);
    let span = (t - first).max(3_600_000);
    let start = t - span - span / 10;
    (start, t, ((t - start) / 250).max(1000))
}

pub fn run(db_path: &Path, args: QueryArgs) -> Result<ExitCode> {
    let db = crate::open_ro(db_path)?;
    let engine = engine(&args.profile, &args.lookback)?;
    if args.shade.is_some() && args.format != OutputFormat::Chart {
        bail!("--shade draws episodes over a chart: use it with --format chart");
    }
    let mut range = match (&args.start, &args.end) {
        (Some(s), Some(e)) => {
            let (start, end) = (parse_time(s)?, parse_time(e)?);
            let step = match &args.step {
                Some(s) => parse_duration(s)?,
                None => ((end - start) / 250).max(1000),
            };
            Some((start, end, step))
        }
        _ => None,
    };
    let time = match &args.time {
        Some(t) => parse_time(t)?,
        None => now_ms(),
    };
    let mut shade = Vec::new();
    if let Some(expr) = &args.shade {
        shade = evaluate_shade(&db, &engine, expr, range.map_or(time, |r| r.1))?;
        if range.is_none() {
            let (start, end, step) = shade_range(&shade, time);
            let step = args.step.as_deref().map_or(Ok(step), parse_duration)?;
            range = Some((start, end, step));
        }
    }
    let spec = QuerySpec {
        expr: args.expr.clone(),
        range,
        time,
    };
    let res = match evaluate(&db, &engine, &spec) {
        Ok(r) => r,
        Err(e) if args.format == OutputFormat::PromJson => {
            output::prom_json_error(&mut std::io::stdout(), &e.to_string())?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e),
    };
    // Standard output is line-buffered: a range query's rows would cost a write each.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    output::render_shaded(
        &mut out,
        &res,
        args.format,
        &spec,
        args.out.as_deref(),
        &shade,
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tsq test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Test scripts (`*.test`) or folders holding them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn test(args: TestArgs) -> Result<ExitCode> {
    let mut files = Vec::new();
    for f in &args.files {
        if f.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(f)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "test"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(f.clone());
        }
    }
    let (mut cases, mut passed, mut failures) = (0, 0, 0);
    for f in &files {
        let report =
            tsq::exec::promqltest::run_file(f).map_err(|e| anyhow!("{}: {e}", f.display()))?;
        cases += report.cases;
        passed += report.passed;
        failures += report.failures.len();
        for msg in &report.failures {
            println!("FAIL {msg}");
        }
        println!("{}: {}/{} passed", f.display(), report.passed, report.cases);
    }
    println!("{passed} passed, {} failed", cases - passed);
    Ok(if failures == 0 && passed == cases {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shade_range_starts_before_the_first_episode() {
        let h = 3_600_000;
        let ep = |start: i64| Episode {
            labels: tsq::storage::Labels::new([("job", "a")]),
            start,
            end: start + h,
            ongoing: false,
            truncated_start: false,
            measures: vec![],
        };
        // Episodes from 10 h before t: the range starts 11 h before t.
        assert_eq!(
            shade_range(&[ep(-6 * h), ep(-10 * h)], 0),
            (-11 * h, 0, 11 * h / 250)
        );
        // None, or only recent ones: the last hour and a tenth.
        assert_eq!(shade_range(&[], 0).0, -h - h / 10);
        assert_eq!(shade_range(&[ep(-h / 2)], 0).0, -h - h / 10);
    }
}
