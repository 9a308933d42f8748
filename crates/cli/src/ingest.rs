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
use tsq::storage::{Db, MetricMeta, SeriesRef};

/// FNV-1a over 8-byte words: series keys are short and trusted enough (a collision only
/// costs a comparison), and SipHash was a visible share of ingest time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h = (h ^ u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .wrapping_mul(0x0000_0100_0000_01b3);
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
    // The database is opened only once a file has passed its check, so that a bad first
    // file leaves even a new database directory uncreated.
    let mut db: Option<Db> = None;
    let mut total = 0u64;
    let started = Instant::now();
    let mut failed = false;
    for file in &args.files {
        let res = check_file(file, &args).and_then(|checked| {
            if db.is_none() {
                db = Some(crate::open_rw(db_path)?);
            }
            write_file(db.as_ref().expect("opened above"), checked, &args)
        });
        match res {
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
    if let Some(db) = db {
        db.close()?;
    }
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

/// A file that passed its check pass.
pub struct Checked {
    name: String,
    source: Source,
    format: Format,
    opts: ParseOptions,
    started: Instant,
}

/// Where the bytes come from: a file (read twice, in chunks) or standard input (held in
/// memory, since it can be read only once).
enum Source {
    File(PathBuf),
    Memory(Vec<u8>),
}

const CHUNK: usize = 4 << 20;

impl Source {
    fn open(file: &Path) -> Result<(String, Source)> {
        if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            Ok(("<stdin>".into(), Source::Memory(buf)))
        } else {
            std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
            Ok((file.display().to_string(), Source::File(file.to_path_buf())))
        }
    }

    /// The first bytes, for format detection.
    fn head(&self) -> Result<Vec<u8>> {
        match self {
            Source::Memory(b) => Ok(b[..b.len().min(64 << 10)].to_vec()),
            Source::File(p) => {
                let mut f = std::fs::File::open(p)?;
                let mut buf = vec![0; 64 << 10];
                let mut n = 0;
                while n < buf.len() {
                    let k = f.read(&mut buf[n..])?;
                    if k == 0 {
                        break;
                    }
                    n += k;
                }
                buf.truncate(n);
                Ok(buf)
            }
        }
    }

    /// Parses the whole source in 4 MiB windows: memory stays bounded whatever the size.
    fn parse<E>(
        &self,
        opts: &ParseOptions,
        mut f: impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<formats::ParseSummary, ParseFailure<E>>
    where
        E: From<std::io::Error>,
    {
        let mut parser = formats::Parser::new(opts);
        match self {
            Source::Memory(b) => parser.finish(b, f),
            Source::File(p) => {
                let mut file =
                    std::fs::File::open(p).map_err(|e| ParseFailure::Callback(e.into()))?;
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                loop {
                    if filled == buf.len() {
                        // A line longer than the window: grow (the parser bounds line length).
                        buf.resize(buf.len() * 2, 0);
                    }
                    let n = file
                        .read(&mut buf[filled..])
                        .map_err(|e| ParseFailure::Callback(e.into()))?;
                    if n == 0 {
                        return parser.finish(&buf[..filled], f);
                    }
                    filled += n;
                    let used = parser.feed(&buf[..filled], &mut f)?;
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                }
            }
        }
    }
}

/// The error of the check pass: I/O only (syntax errors come as `ParseFailure::Syntax`).
struct CheckIo(std::io::Error);

impl From<std::io::Error> for CheckIo {
    fn from(e: std::io::Error) -> Self {
        CheckIo(e)
    }
}

/// Reads and checks one file (pass 1): nothing is written.
pub fn check_file(file: &Path, args: &IngestArgs) -> Result<Checked> {
    let (name, source) = Source::open(file)?;
    let format = if args.format == "auto" {
        let fname = (name != "<stdin>").then_some(name.as_str());
        formats::detect_format(fname, &source.head()?)
            .ok_or_else(|| anyhow!("{name}: cannot tell the format; pass --format"))?
    } else {
        Format::parse(&args.format).expect("validated by clap")
    };
    let mut opts = ParseOptions::new(format);
    opts.precision = Precision::parse(&args.precision).expect("validated by clap");
    opts.skip_invalid = args.skip_invalid;
    let started = Instant::now();
    let summary = match source.parse(&opts, |_| Ok::<(), CheckIo>(())) {
        Ok(s) => s,
        Err(ParseFailure::Syntax(e)) => bail!("{name}:{}:{}: {}", e.line, e.column, e.message),
        Err(ParseFailure::Callback(CheckIo(e))) => return Err(anyhow!("{name}: {e}")),
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
    Ok(Checked {
        name,
        source,
        format,
        opts,
        started,
    })
}

/// Writes a checked file (pass 2); returns the number of samples written.
/// One batch on its way from the parsing thread to the committing thread.
#[derive(Default)]
struct Batch {
    samples: Vec<(SeriesRef, i64, f64)>,
    meta: Vec<(String, MetricMeta)>,
    last_line: usize,
}

/// Writes a checked file (pass 2); returns the number of samples written.
///
/// Parsing and committing overlap: this thread parses the next batch while a second one
/// writes, syncs and applies the previous (the two cores of a small machine both work, and
/// the fsync wait no longer stalls parsing). Batches are committed in file order.
pub fn write_file(db: &Db, checked: Checked, args: &IngestArgs) -> Result<u64> {
    let Checked {
        name,
        source,
        format,
        opts,
        started,
    } = checked;
    let mut refs = KeyMap::default();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
    let written = std::thread::scope(|scope| -> Result<u64> {
        let committer = scope.spawn(|| -> Result<u64> {
            let mut app = db.appender();
            let mut written = 0u64;
            for batch in rx {
                for (r, t, v) in &batch.samples {
                    app.add(*r, *t, *v);
                }
                for (metric, m) in batch.meta {
                    app.set_metadata(&metric, m);
                }
                app.commit().with_context(|| {
                    format!(
                        "{name}: writing a batch ending at line {} ({written} samples of this file already committed)",
                        batch.last_line
                    )
                })?;
                written += batch.samples.len() as u64;
            }
            Ok(written)
        });
        let mut batch = Batch::default();
        let known_meta = db.metadata();
        let res = source.parse(&opts, |ev| -> Result<()> {
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
                    batch.samples.push((r, rec.timestamp_ms, rec.value));
                    batch.last_line = rec.line;
                    if batch.samples.len() >= args.batch {
                        let full = std::mem::take(&mut batch);
                        batch.samples.reserve(args.batch);
                        // A closed channel means the committer failed: its error is reported.
                        if tx.send(full).is_err() {
                            return Err(anyhow!("the writer stopped"));
                        }
                    }
                }
                Event::Metadata { metric, meta } => {
                    let mut m = meta.clone();
                    if let Some(old) = known_meta.get(metric) {
                        m.kind = old.kind;
                    }
                    batch.meta.push((metric.to_string(), m));
                }
            }
            Ok(())
        });
        if res.is_ok() {
            let _ = tx.send(batch);
        }
        drop(tx);
        let committed = committer.join().expect("the committer does not panic");
        match res {
            Ok(_) => committed,
            Err(ParseFailure::Syntax(e)) => bail!("{name}:{}:{}: {}", e.line, e.column, e.message),
            Err(ParseFailure::Callback(e)) => Err(committed.err().unwrap_or(e)),
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{name}: {written} samples, {} series ({format}) in {secs:.2} s ({:.2} M samples/s)",
        refs.len(),
        written as f64 / secs.max(1e-9) / 1e6
    );
    Ok(written)
}
