//! The `tsq` command-line tool: ingest metrics, ask PromQL questions, look inside the
//! database. A thin layer over the `tsq` library; see docs/cli.md.

// The one exception is `malloc.rs` (glibc allocator settings for the query commands).
#![deny(unsafe_code)]

mod backtest;
mod chart;
mod demo;
mod gen;
mod ingest;
mod inspect;
mod malloc;
mod output;
mod query;
mod repl;
mod timearg;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tsq: an embedded metrics engine. Store metrics in a directory, ask PromQL questions.
#[derive(Parser, Debug)]
#[command(name = "tsq", version, about, long_about = None, after_help = "Examples:\n  tsq demo\n  tsq ingest metrics.om\n  tsq query 'rate(http_requests_total[5m])' --start now-1h --end now --step 1m --format chart\n  tsq series '{service=\"api\"}'")]
pub struct Cli {
    /// Database directory.
    #[arg(long, global = true, env = "TSQ_DB", default_value = "./tsq-data")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate the workload dataset into a database and walk through what tsq answers.
    #[command(
        after_help = "Example:\n  tsq demo            # into ./tsq-data (or --db DIR)\n  tsq demo --days 3   # a smaller dataset"
    )]
    Demo(demo::DemoArgs),
    /// Import metrics from files or stdin (atomic per file unless --skip-invalid).
    #[command(
        after_help = "Examples:\n  tsq ingest node.om\n  tsq ingest --format influx --precision s data.lp\n  cat scrape.prom | tsq ingest --format prometheus -"
    )]
    Ingest(ingest::IngestArgs),
    /// Evaluate a PromQL expression (instant, or range with --start/--end/--step).
    #[command(
        after_help = "Examples:\n  tsq query up\n  tsq query --time 2026-01-01T12:00:00Z 'sum by (service) (rate(http_requests_total[5m]))'\n  tsq query --start now-1d --end now --step 5m --format chart 'request_latency_seconds'"
    )]
    Query(query::QueryArgs),
    /// Interactive queries with history and line editing.
    Repl(repl::ReplArgs),
    /// List the series matching a selector.
    #[command(after_help = "Example:\n  tsq series 'http_requests_total{code=\"5xx\"}'")]
    Series(inspect::SeriesArgs),
    /// List label names, or the values of one label.
    #[command(after_help = "Examples:\n  tsq labels\n  tsq labels service")]
    Labels(inspect::LabelsArgs),
    /// Show blocks, time ranges, sizes, WAL segments and codecs.
    Inspect,
    /// Cardinality and bytes per sample by codec and by metric.
    Analyze(inspect::AnalyzeArgs),
    /// Print samples as re-ingestable OpenMetrics text.
    #[command(after_help = "Example:\n  tsq dump 'up' --start now-1h > up.om")]
    Dump(inspect::DumpArgs),
    /// Verify every checksum; exit code 1 if anything is damaged.
    Check,
    /// Rebuild a lost or damaged MANIFEST from the blocks (damaged blocks are moved aside).
    #[command(
        after_help = "Example:\n  tsq --db ./tsq-data repair\n\nTombstones and metric metadata of a lost manifest cannot be recovered; the WAL replays as usual."
    )]
    Repair {
        /// Rebuild even a readable manifest (its tombstones and metadata are then lost).
        #[arg(long)]
        force: bool,
    },
    /// Flush the head to blocks and compact now.
    Compact,
    /// Delete series or time ranges (space reclaimed at compaction).
    #[command(
        after_help = "Example:\n  tsq delete '{job=\"test\"}' --start 2026-01-01T00:00:00Z --end 2026-01-02T00:00:00Z"
    )]
    Delete(inspect::DeleteArgs),
    /// Show or set a metric's metadata (kind kpi/health, unit, help).
    #[command(after_help = "Examples:\n  tsq meta\n  tsq meta request_latency_seconds --kind kpi")]
    Meta(inspect::MetaArgs),
    /// Write a deterministic benchmark dataset (devops or workload).
    #[command(
        after_help = "Examples:\n  tsq gen --dataset devops --format openmetrics > devops.om\n  tsq gen --dataset workload --days 8 --format influx --out workload.lp --truth truth.json"
    )]
    Gen(gen::GenArgs),
    /// Benchmarks: `tsq bench ingest` measures ingestion through the embedded API.
    #[command(subcommand)]
    Bench(gen::BenchCommand),
    /// Replay Prometheus alerting/recording rules over history; score them against incidents.
    #[command(
        after_help = "Examples:\n  tsq backtest --rules rules.yml --from 2026-01-02T00:00:00Z --to 2026-01-09T00:00:00Z\n  tsq backtest --rules rules.yml --from now-7d --to now --incidents truth.json --incident-kinds error_burst\n  tsq backtest diff old.yml new.yml --from now-7d --to now --format md"
    )]
    Backtest(Box<backtest::BacktestArgs>),
    /// Run query test scripts (Prometheus load/eval format).
    #[command(after_help = "Example:\n  tsq test tests/data/queries/*.test")]
    Test(query::TestArgs),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Demo(a) => demo::run(&cli.db, a),
        Command::Ingest(a) => ingest::run(&cli.db, a),
        Command::Query(a) => {
            malloc::keep_freed_memory();
            query::run(&cli.db, a)
        }
        Command::Repl(a) => repl::run(&cli.db, a),
        Command::Series(a) => inspect::series(&cli.db, a),
        Command::Labels(a) => inspect::labels(&cli.db, a),
        Command::Inspect => inspect::inspect(&cli.db),
        Command::Analyze(a) => inspect::analyze(&cli.db, a),
        Command::Dump(a) => inspect::dump(&cli.db, a),
        Command::Check => inspect::check(&cli.db),
        Command::Repair { force } => inspect::repair(&cli.db, force),
        Command::Compact => inspect::compact(&cli.db),
        Command::Delete(a) => inspect::delete(&cli.db, a),
        Command::Meta(a) => inspect::meta(&cli.db, a),
        Command::Gen(a) => gen::gen(a),
        Command::Bench(b) => gen::bench(b),
        Command::Test(a) => query::test(a),
        Command::Backtest(a) => {
            malloc::keep_freed_memory();
            backtest::run(&cli.db, *a)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "tsq", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the database for writing, printing what recovery found.
fn open_rw(path: &std::path::Path) -> anyhow::Result<tsq::storage::Db> {
    use anyhow::Context;
    let db = tsq::storage::Db::open(path).with_context(|| format!("opening {}", path.display()))?;
    report_notices(&db);
    Ok(db)
}

/// Opens the database read-only (works while another process writes).
fn open_ro(path: &std::path::Path) -> anyhow::Result<tsq::storage::Db> {
    use anyhow::Context;
    if !path.join("wal").exists() && !path.join("MANIFEST").exists() {
        anyhow::bail!(
            "no database at {} (create one with `tsq ingest`, `tsq demo`, or pass --db DIR)",
            path.display()
        );
    }
    tsq::storage::Db::open_read_only(path).with_context(|| format!("opening {}", path.display()))
}

fn report_notices(db: &tsq::storage::Db) {
    for n in db.recovery_notices() {
        eprintln!(
            "notice: {}: offset {}: {}",
            n.segment.display(),
            n.offset,
            n.message
        );
    }
}
