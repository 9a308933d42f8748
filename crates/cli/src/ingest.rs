//! `tsq ingest`: import OpenMetrics, Prometheus text, Influx line protocol or CSV.
//!
//! Atomic per file by default: a first pass checks the whole file, and only a file without
//! errors is written (so a bad line leaves the database exactly as it was). The second pass
//! writes in batches, each one WAL record synced before the next.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
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
    /// Draw no progress bar (one is drawn on standard error only when it is a terminal).
    #[arg(long, visible_alias = "quiet")]
    no_progress: bool,
}

/// The progress bar of one pass over one file: bytes read of the total, samples/s.
///
/// Updated from the read loop, once per window read and at most every
/// [`Progress::INTERVAL`]: counting a sample is one increment of a `Cell`, and each update
/// publishes the count and moves the bar (one redraw).
struct Progress {
    bar: Option<ProgressBar>,
    samples: Cell<u64>,
    /// The count as of the last update, read by the bar's `{rate}` when it draws.
    shown: Arc<AtomicU64>,
    last: Cell<Instant>,
}

impl Progress {
    const INTERVAL: Duration = Duration::from_millis(100);

    /// A bar on stderr when it is a terminal and `--no-progress` was not given.
    fn new(args: &IngestArgs, what: &str, name: &str, total: u64) -> Progress {
        let shown = Arc::new(AtomicU64::new(0));
        let bar = (!args.no_progress && std::io::stderr().is_terminal()).then(|| {
            let count = Arc::clone(&shown);
            let rate = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = state.elapsed().as_secs_f64().max(1e-9);
                let n = count.load(Ordering::Relaxed) as f64;
                let _ = write!(w, "{:.2} M samples/s", n / secs / 1e6);
            };
            let style =
                ProgressStyle::with_template("{prefix} [{wide_bar}] {bytes}/{total_bytes} {rate}")
                    .expect("a valid template")
                    .with_key("rate", rate)
                    .progress_chars("=> ");
            // The file name only, and not too much of it: the line must fit 80 columns.
            let short = Path::new(name)
                .file_name()
                .map_or(name.into(), |f| f.to_string_lossy());
            let short: String = short.chars().take(24).collect();
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10))
                .with_style(style)
                .with_prefix(format!("{what} {short}"))
        });
        Progress {
            bar,
            samples: Cell::new(0),
            shown,
            last: Cell::new(Instant::now()),
        }
    }

    /// No bar (the count is kept all the same).
    #[cfg(test)]
    fn hidden() -> Progress {
        Progress {
            bar: None,
            samples: Cell::new(0),
            shown: Arc::new(AtomicU64::new(0)),
            last: Cell::new(Instant::now()),
        }
    }

    fn sample(&self) {
        self.samples.set(self.samples.get() + 1);
    }

    /// `bytes` of the source have been read.
    fn update(&self, bytes: u64) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        if now.duration_since(self.last.get()) < Self::INTERVAL {
            return;
        }
        self.last.set(now);
        self.shown.store(self.samples.get(), Ordering::Relaxed);
        bar.set_position(bytes);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
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

    /// The size in bytes (0 when unknown).
    fn len(&self) -> u64 {
        match self {
            Source::Memory(b) => b.len() as u64,
            Source::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
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
    /// Standard input, already in memory, is fed in windows of the same size so that the
    /// progress bar moves.
    fn parse<E>(
        &self,
        opts: &ParseOptions,
        progress: &Progress,
        mut f: impl FnMut(Event<'_>) -> Result<(), E>,
    ) -> Result<formats::ParseSummary, ParseFailure<E>>
    where
        E: From<std::io::Error>,
    {
        let mut parser = formats::Parser::new(opts);
        match self {
            Source::Memory(b) => {
                let (mut pos, mut window) = (0, CHUNK);
                loop {
                    let end = (pos + window).min(b.len());
                    if end == b.len() {
                        return parser.finish(&b[pos..], f);
                    }
                    let used = parser.feed(&b[pos..end], &mut f)?;
                    if used == 0 {
                        // A line longer than the window.
                        window *= 2;
                    }
                    pos += used;
                    progress.update(pos as u64);
                }
            }
            Source::File(p) => {
                let mut file =
                    std::fs::File::open(p).map_err(|e| ParseFailure::Callback(e.into()))?;
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                let mut read = 0u64;
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
                    read += n as u64;
                    progress.update(read);
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
    let progress = Progress::new(args, "checking", &name, source.len());
    let parsed = source.parse(&opts, &progress, |ev| {
        if let Event::Sample(_) = ev {
            progress.sample();
        }
        Ok::<(), CheckIo>(())
    });
    progress.finish();
    let summary = match parsed {
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
        let progress = Progress::new(args, "writing", &name, source.len());
        let res = source.parse(&opts, &progress, |ev| -> Result<()> {
            match ev {
                Event::Sample(rec) => {
                    progress.sample();
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
        progress.finish();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard input is fed in windows like a file: same samples, same error position,
    /// lines longer than a window included.
    #[test]
    fn memory_source_parses_in_windows_like_a_file() {
        let mut text = String::new();
        let mut i = 0u64;
        while text.len() < CHUNK * 2 + 12_345 {
            text.push_str(&format!(
                "m{{k=\"{}\"}} {i} {}\n",
                i % 97,
                1_700_000_000 + i
            ));
            i += 1;
        }
        // A long line (the parser's limit is 1 MiB), across a window boundary.
        let long = "v".repeat(900 << 10);
        text.push_str(&format!("m{{k=\"{long}\"}} 1 1700000000\n"));
        let good = format!("{text}# EOF\n");
        let bad = format!("{text}m{{ 1 2\n# EOF\n");
        let dir = tempfile::tempdir().unwrap();
        let opts = ParseOptions::new(Format::OpenMetrics);
        let run = |source: &Source| {
            let progress = Progress::hidden();
            let res = source.parse(&opts, &progress, |ev| {
                if let Event::Sample(_) = ev {
                    progress.sample();
                }
                Ok::<(), CheckIo>(())
            });
            let err = match res {
                Ok(_) => None,
                Err(ParseFailure::Syntax(e)) => Some((e.line, e.column)),
                Err(ParseFailure::Callback(CheckIo(e))) => panic!("{e}"),
            };
            (progress.samples.get(), err)
        };
        for (body, fails) in [(good, false), (bad, true)] {
            let path = dir.path().join("f.om");
            std::fs::write(&path, &body).unwrap();
            let from_file = run(&Source::File(path));
            let from_memory = run(&Source::Memory(body.into_bytes()));
            assert_eq!(from_file, from_memory);
            assert!(from_file.0 >= i, "{from_file:?}");
            assert_eq!(from_file.1.is_some(), fails, "{:?}", from_file.1);
        }
    }
}
