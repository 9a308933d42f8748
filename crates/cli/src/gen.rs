//! `tsq gen` (benchmark datasets as files) and `tsq bench ingest` (in-process throughput).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tsq::formats::gen::{self, Dataset, DevopsParams, WorkloadParams};
use tsq::storage::{Db, SeriesRef, SyncPolicy};

use crate::timearg::parse_time;

/// Which dataset and how big.
#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    /// `devops` (TSBS cpu-only) or `workload` (service metrics with rhythm).
    #[arg(long, value_parser = ["devops", "workload"])]
    pub dataset: String,
    /// devops: number of hosts.
    #[arg(long)]
    pub hosts: Option<usize>,
    /// workload: number of services.
    #[arg(long)]
    pub services: Option<usize>,
    /// workload: instances per service.
    #[arg(long)]
    pub instances: Option<usize>,
    /// Days of data (devops default 1, workload default 7).
    #[arg(long)]
    pub days: Option<u32>,
    /// Seed.
    #[arg(long, default_value_t = gen::DEFAULT_SEED)]
    pub seed: u64,
    /// Time of the first sample (default 2026-01-01T00:00:00Z).
    #[arg(long)]
    pub start: Option<String>,
}

impl DatasetArgs {
    /// Builds the dataset.
    pub fn build(&self) -> Result<Dataset> {
        let start = self
            .start
            .as_deref()
            .map(parse_time)
            .transpose()?
            .unwrap_or(gen::DEFAULT_START_MS);
        Ok(match self.dataset.as_str() {
            "devops" => {
                let d = DevopsParams::default();
                gen::devops(&DevopsParams {
                    hosts: self.hosts.unwrap_or(d.hosts),
                    days: self.days.unwrap_or(d.days),
                    start_ms: start,
                    seed: self.seed,
                    ..d
                })
            }
            "workload" => {
                let d = WorkloadParams::default();
                gen::workload(&WorkloadParams {
                    services: self.services.unwrap_or(d.services),
                    instances: self.instances.unwrap_or(d.instances),
                    days: self.days.unwrap_or(d.days),
                    start_ms: start,
                    seed: self.seed,
                    ..d
                })
            }
            other => bail!("unknown dataset {other}"),
        })
    }
}

/// Arguments of `tsq gen`.
#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Output format.
    #[arg(long, default_value = "openmetrics", value_parser = ["openmetrics", "influx"])]
    format: String,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the ground truth (injected anomalies, restarts, deploys) as JSON here.
    #[arg(long)]
    truth: Option<PathBuf>,
}

pub fn gen(args: GenArgs) -> Result<ExitCode> {
    let ds = args.dataset.build()?;
    let started = Instant::now();
    let sink: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let w = std::io::BufWriter::with_capacity(1 << 20, sink);
    let mut w = match args.format.as_str() {
        "influx" => ds.write_influx(w)?,
        _ => ds.write_openmetrics(w)?,
    };
    w.flush()?;
    if let Some(p) = &args.truth {
        let json = serde_json::to_string_pretty(&ds.sidecar_json())?;
        std::fs::write(p, json).with_context(|| format!("writing {}", p.display()))?;
    }
    eprintln!(
        "{} dataset (seed {}): {} series, {} steps of {} s, written in {:.2} s",
        ds.name(),
        ds.seed(),
        ds.series().len(),
        ds.steps(),
        ds.step_ms() / 1000,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `tsq bench ...`.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Ingestion through the embedded API, WAL on: samples/s, bytes/sample, peak memory.
    #[command(after_help = "Example:\n  tsq bench ingest --dataset workload --days 8")]
    Ingest(BenchIngestArgs),
    /// Head memory per active series: RSS growth while creating series, minus their samples.
    #[command(after_help = "Example:\n  tsq bench head --series 1000000 --samples 1")]
    Head(BenchHeadArgs),
}

/// Arguments of `tsq bench head`.
#[derive(Args, Debug)]
pub struct BenchHeadArgs {
    /// Number of series to create.
    #[arg(long, default_value_t = 1_000_000)]
    series: usize,
    /// Samples appended to each series (one 15 s scrape apart).
    #[arg(long, default_value_t = 1)]
    samples: usize,
}

/// Current resident memory of this process (Linux `VmRSS`), in KiB.
fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// `tsq bench head`: series shaped like a scrape target's (name, job, instance, a few
/// more labels; 100 metric names per instance), created through the appender with the WAL on.
fn bench_head(args: BenchHeadArgs) -> Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let db = Db::builder()
        .sync(SyncPolicy::Never)
        .flush_samples(u64::MAX)
        .flush_bytes(u64::MAX)
        .open(tmp.path())?;
    let labels_of = |i: usize| {
        let host = i / 100;
        tsq::storage::Labels::new([
            ("__name__", format!("node_metric_{}_total", i % 100)),
            ("job", "node".to_string()),
            ("instance", format!("host-{host}.example.net:9100")),
            ("region", format!("region-{}", host % 7)),
            ("rack", format!("rack-{}", host % 97)),
            ("cpu", format!("{}", i % 8)),
        ])
    };
    let before = rss_kib().unwrap_or(0);
    let started = Instant::now();
    let mut app = db.appender();
    let mut label_bytes = 0usize;
    for i in 0..args.series {
        let l = labels_of(i);
        label_bytes += l
            .iter()
            .map(|p| p.name.len() + p.value.len())
            .sum::<usize>();
        let r = app.series_ref(&l)?;
        for k in 0..args.samples {
            app.add(r, k as i64 * 15_000, (i + k) as f64);
        }
        if app.len() >= 250_000 {
            app.commit()?;
        }
    }
    app.commit()?;
    let secs = started.elapsed().as_secs_f64();
    let after = rss_kib().unwrap_or(0);
    let grown = after.saturating_sub(before) as f64 * 1024.0;
    let per_series = grown / args.series as f64;
    // An open head chunk keeps raw samples: 8 bytes of timestamp and 8 of value each.
    let sample_bytes = 16.0 * args.samples as f64;
    println!(
        "series        {} created with {} sample(s) each in {:.2} s",
        args.series, args.samples, secs
    );
    println!(
        "RSS           {:.1} MiB -> {:.1} MiB ({:.1} MiB grown)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        grown / 1048576.0
    );
    println!(
        "per series    {:.0} bytes, of which {:.0} raw samples: {:.0} bytes beyond its samples \
         (label text averages {:.0} bytes; goal < 1024)",
        per_series,
        sample_bytes,
        per_series - sample_bytes,
        label_bytes as f64 / args.series as f64
    );
    drop(db);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tsq bench ingest`.
#[derive(Args, Debug)]
pub struct BenchIngestArgs {
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Samples per committed batch.
    #[arg(long, default_value_t = 250_000)]
    batch: usize,
    /// WAL sync policy: batch (sync every commit), never.
    #[arg(long, default_value = "batch", value_parser = ["batch", "never"])]
    sync: String,
    /// Database directory (default: a temporary directory, removed afterwards).
    #[arg(long = "into")]
    into: Option<PathBuf>,
}

/// Peak resident memory of this process (Linux `VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                total += dir_size(&path);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

/// Writes a dataset into `db` through the appender; returns (samples, seconds).
pub fn load_dataset(db: &Db, ds: &Dataset, batch: usize) -> Result<(u64, f64)> {
    let refs: Vec<SeriesRef> = ds
        .series()
        .iter()
        .map(|s| db.series_ref(&s.labels))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut app = db.appender();
    for (name, meta) in ds.metadata() {
        app.set_metadata(name, meta.clone());
    }
    let mut n = 0u64;
    ds.for_each_sample(|i, t, v| -> tsq::storage::Result<()> {
        app.add(refs[i], t, v);
        if app.len() >= batch {
            n += app.len() as u64;
            app.commit()?;
        }
        Ok(())
    })?;
    n += app.len() as u64;
    app.commit()?;
    Ok((n, started.elapsed().as_secs_f64()))
}

pub fn bench(cmd: BenchCommand) -> Result<ExitCode> {
    let args = match cmd {
        BenchCommand::Ingest(a) => a,
        BenchCommand::Head(a) => return bench_head(a),
    };
    let ds = args.dataset.build()?;
    let tmp;
    let dir = match &args.into {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let sync = if args.sync == "never" {
        SyncPolicy::Never
    } else {
        SyncPolicy::Batch
    };
    // Keep everything in the head and the WAL, so that the reopen below replays it all.
    let db = Db::builder()
        .sync(sync)
        .flush_samples(u64::MAX)
        .flush_bytes(u64::MAX)
        .open(&dir)?;
    let (n, secs) = load_dataset(&db, &ds, args.batch)?;
    let rss_ingest = peak_rss_kib();
    // The dataset is generated while it is written; time the generator alone to separate it.
    let gen_start = Instant::now();
    let mut checksum = 0f64;
    ds.for_each_sample(|_, _, v| -> Result<(), ()> {
        checksum += v;
        Ok(())
    })
    .expect("the sink never fails");
    let gen_secs = gen_start.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    drop(db);
    let wal_bytes = dir_size(&dir.join("wal"));
    let replay_start = Instant::now();
    let db = Db::builder().sync(sync).open(&dir)?;
    let replay_secs = replay_start.elapsed().as_secs_f64();
    let rss_replay = peak_rss_kib();
    let flush_start = Instant::now();
    db.compact()?;
    let flush_secs = flush_start.elapsed().as_secs_f64();
    db.close()?;
    let blocks = dir_size(&dir.join("blocks"));
    let total = dir_size(&dir);
    let reopen = Instant::now();
    let db = Db::open_read_only(&dir)?;
    let open_ms = reopen.elapsed().as_secs_f64() * 1000.0;
    drop(db);
    let mib =
        |k: Option<u64>| k.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "dataset       {} (seed {}), {} series, {} samples",
        ds.name(),
        ds.seed(),
        ds.series().len(),
        n
    );
    println!(
        "parameters    batch {} samples, sync {}",
        args.batch, args.sync
    );
    println!(
        "ingest        {:.2} s, {:.2} M samples/s with generation; generation alone {:.2} s, so {:.2} M samples/s for appender + WAL (one writer thread)",
        secs,
        n as f64 / secs / 1e6,
        gen_secs,
        n as f64 / (secs - gen_secs).max(1e-9) / 1e6
    );
    println!(
        "WAL replay    {:.2} s for {} samples ({} bytes of WAL), {:.2} M samples/s",
        replay_secs,
        n,
        wal_bytes,
        n as f64 / replay_secs / 1e6
    );
    println!("flush+compact {:.2} s", flush_secs);
    println!(
        "bytes/sample  {:.3} (blocks), {:.3} (whole directory, {} bytes)",
        blocks as f64 / n as f64,
        total as f64 / n as f64,
        total
    );
    println!(
        "open          {:.1} ms (read-only, after compaction)",
        open_ms
    );
    println!(
        "peak RSS      {} after ingest, {} after replay (replay must not raise it)",
        mib(rss_ingest),
        mib(rss_replay)
    );
    Ok(ExitCode::SUCCESS)
}
