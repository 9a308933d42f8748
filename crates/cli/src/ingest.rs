//! `tsq ingest`: import OpenMetrics, Prometheus text, Influx line protocol or CSV.
//!
//! Atomic per file by default: a first pass checks the whole file, and only a file without
//! errors is written (so a bad line leaves the database exactly as it was). The second pass
//! writes in batches, each one WAL record synced before the next.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tsq::formats::{self, Event, Format, ParseFailure, ParseOptions, Precision};
use tsq::storage::{Db, SeriesRef};

/// FNV-1a over 8-byte words: series keys are short and trusted enough (a collision only
/// costs a comparison), and SipHash was a visible share of ingest time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = (h ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(0x0000_0100_0000_01b3);
            h ^= h >> 29;
        }
        for &b in chunks.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type KeyMap = HashMap<Box<str>, SeriesRef, BuildHasherDefault<KeyHasher>>;

/// Arguments of `tsq ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Files to import; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Input format; `auto` looks at the file name and the first lines.
    #[arg(long, default_value = "auto", value_parser = ["auto", "openmetrics", "prometheus", "influx", "csv"])]
    format: String,
    /// Timestamp precision of Influx line protocol.
    #[arg(long, default_value = "ns", value_parser = ["ns", "us", "ms", "s"])]
    precision: String,
    /// Import the valid lines and report the invalid ones instead of refusing the file.
    #[arg(long)]
    skip_invalid: bool,
    /// Samples per committed (and synced) batch.
    #[arg(long, default_value_t = 250_000)]
    batch: usize,
}

pub fn run(db_path: &Path, args: IngestArgs) -> Result<ExitCode> {
    let db = crate::open_rw(db_path)?;
    let mut total = 0u64;
    let started = Instant::now();
    let mut failed = false;
    for file in &args.files {
        match ingest_file(&db, file, &args) {
            Ok(n) => total += n,
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
                if !args.skip_invalid {
                    break;
                }
            }
        }
    }
    db.close()?;
    let secs = started.elapsed().as_secs_f64();
    if args.files.len() > 1 {
        eprintln!(
            "total: {total} samples in {secs:.2} s ({:.2} M samples/s)",
            total as f64 / secs.max(1e-9) / 1e6
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn read_input(file: &Path) -> Result<(String, Vec<u8>)> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(("<stdin>".into(), buf))
    } else {
        let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        Ok((file.display().to_string(), data))
    }
}

/// Imports one file; returns the number of samples written.
pub fn ingest_file(db: &Db, file: &Path, args: &IngestArgs) -> Result<u64> {
    let (name, data) = read_input(file)?;
    let format = if args.format == "auto" {
        let fname = (name != "<stdin>").then_some(name.as_str());
        formats::detect_format(fname, &data)
            .ok_or_else(|| anyhow!("{name}: cannot tell the format; pass --format"))?
    } else {
        Format::parse(&args.format).expect("validated by clap")
    };
    let mut opts = ParseOptions::new(format);
    opts.precision = Precision::parse(&args.precision).expect("validated by clap");
    opts.skip_invalid = args.skip_invalid;
    let started = Instant::now();

    // Pass 1: check everything before writing anything.
    let summary = match formats::parse(&data, &opts, |_| Ok::<(), ()>(())) {
        Ok(s) => s,
        Err(ParseFailure::Syntax(e)) => bail!("{name}:{}:{}: {}", e.line, e.column, e.message),
        Err(ParseFailure::Callback(())) => unreachable!("the check pass never fails"),
    };
    if summary.error_count > 0 {
        eprintln!(
            "{name}: skipping {} invalid lines; the first errors:",
            summary.skipped_lines
        );
        for e in &summary.errors {
            eprintln!("  {name}:{}:{}: {}", e.line, e.column, e.message);
        }
    }

    // Pass 2: write.
    let mut refs = KeyMap::default();
    let mut app = db.appender();
    let mut written = 0u64;
    let res = formats::parse(&data, &opts, |ev| -> Result<()> {
        match ev {
            Event::Sample(rec) => {
                let r = match refs.get(rec.series_key) {
                    Some(r) => *r,
                    None => {
                        let labels = formats::parse_series_key(rec.series_key)
                            .map_err(|e| anyhow!("line {}: {}", rec.line, e.message))?;
                        let r = db.series_ref(&labels)?;
                        refs.insert(rec.series_key.into(), r);
                        r
                    }
                };
                app.add(r, rec.timestamp_ms, rec.value);
                if app.len() >= args.batch {
                    let n = app.len() as u64;
                    app.commit().with_context(|| {
                        format!("{name}: writing a batch ending at line {} ({written} samples of this file already committed)", rec.line)
                    })?;
                    written += n;
                }
            }
            Event::Metadata { metric, meta } => {
                let mut m = meta.clone();
                if let Some(old) = db.metadata().get(metric) {
                    m.kind = old.kind;
                }
                app.set_metadata(metric, m);
            }
        }
        Ok(())
    });
    match res {
        Ok(_) => {}
        Err(ParseFailure::Syntax(e)) => bail!("{name}:{}:{}: {}", e.line, e.column, e.message),
        Err(ParseFailure::Callback(e)) => return Err(e),
    }
    let n = app.len() as u64;
    app.commit()
        .with_context(|| format!("{name}: writing the last batch"))?;
    written += n;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{name}: {written} samples, {} series ({format}) in {secs:.2} s ({:.2} M samples/s)",
        refs.len(),
        written as f64 / secs.max(1e-9) / 1e6
    );
    Ok(written)
}
