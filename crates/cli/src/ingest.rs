//! `tsq ingest`: import OpenMetrics, Prometheus text, Influx line protocol or CSV.
//!
//! Atomic per file by default: a file is read and parsed once into a compact staged form
//! (see [`stage`]; in memory, or a temporary file past 8 MiB), and only once the whole file
//! is known to be valid is anything written (so a bad line leaves the database exactly as
//! it was). Large files are parsed on two threads, one half each, cut at a line start; the
//! second half's result is kept only when one parser would have reported the same (see
//! [`formats::Parser::can_continue_with`]), else the first half's parser reads on. The
//! write pass reads the staged form and commits in batches, each one WAL record synced
//! before the next, in file order.

mod stage;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tsq::formats::{self, Event, Format, ParseFailure, ParseOptions, Precision};
use tsq::storage::{Appender, Db, MetricMeta, SeriesRef};

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

/// The progress bar of one pass over one file: how far (bytes read, or samples written) of
/// the total, and samples/s.
///
/// Updated by the reading threads once per window read and by the writer once per batch, at
/// most every [`Progress::INTERVAL`]: counts are atomics added to per window or batch, and
/// each update publishes the sample count and moves the bar (one redraw).
struct Progress {
    bar: Option<ProgressBar>,
    samples: AtomicU64,
    pos: AtomicU64,
    /// The count as of the last update, read by the bar's `{rate}` when it draws.
    shown: Arc<AtomicU64>,
    started: Instant,
    /// Milliseconds after `started` of the last update.
    last_ms: AtomicU64,
}

impl Progress {
    const INTERVAL: Duration = Duration::from_millis(100);

    /// A bar on stderr when it is a terminal and `--no-progress` was not given. `unit` is
    /// `{bytes}/{total_bytes}` or `{pos}/{len} samples`.
    fn new(args: &IngestArgs, what: &str, name: &str, total: u64, unit: &str) -> Progress {
        let shown = Arc::new(AtomicU64::new(0));
        let bar = (!args.no_progress && std::io::stderr().is_terminal()).then(|| {
            let count = Arc::clone(&shown);
            let rate = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = state.elapsed().as_secs_f64().max(1e-9);
                let n = count.load(Ordering::Relaxed) as f64;
                let _ = write!(w, "{:.2} M samples/s", n / secs / 1e6);
            };
            let style =
                ProgressStyle::with_template(&format!("{{prefix}} [{{wide_bar}}] {unit} {{rate}}"))
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
            samples: AtomicU64::new(0),
            pos: AtomicU64::new(0),
            shown,
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// No bar (the counts are kept all the same).
    #[cfg(test)]
    fn hidden() -> Progress {
        Progress {
            bar: None,
            samples: AtomicU64::new(0),
            pos: AtomicU64::new(0),
            shown: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// `pos` more of the total (bytes read or samples written), `samples` more samples.
    fn add(&self, pos: u64, samples: u64) {
        let samples = self.samples.fetch_add(samples, Ordering::Relaxed) + samples;
        let pos = self.pos.fetch_add(pos, Ordering::Relaxed) + pos;
        let Some(bar) = &self.bar else { return };
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < Self::INTERVAL.as_millis() as u64
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.shown.store(samples, Ordering::Relaxed);
        // A half read again (see `read_source`) counts twice: stay within the bar.
        bar.set_position(pos.min(bar.length().unwrap_or(u64::MAX)));
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
    // The database is opened only once a file has been read and found valid, so that a bad
    // first file leaves even a new database directory uncreated.
    let mut db: Option<Db> = None;
    let mut total = 0u64;
    let started = Instant::now();
    let mut failed = false;
    for file in &args.files {
        let res = stage_file(file, &args).and_then(|staged| {
            if db.is_none() {
                db = Some(crate::open_rw(db_path)?);
            }
            write_staged(db.as_ref().expect("opened above"), staged, &args)
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
        // The head's data is durable in the WAL already; writing it to blocks now means the
        // next `tsq` command opens the database without replaying the import (an 8-day
        // import otherwise leaves ~80 MB of WAL that every open reads again).
        let t = Instant::now();
        db.flush()?;
        db.close()?;
        if total > 0 {
            eprintln!(
                "flushed to blocks in {:.2} s (total {:.2} s)",
                t.elapsed().as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
        }
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

/// A file read, found valid (or with its invalid lines counted, under `--skip-invalid`) and
/// staged: ready to write.
pub struct Staged {
    name: String,
    format: Format,
    /// The segments in file order, each with the number of lines before it.
    segments: Vec<(stage::Stage, usize)>,
    samples: u64,
    started: Instant,
}

/// Where the bytes come from: a file (read in windows) or standard input (held in memory,
/// since it can be read only once).
enum Source {
    File(PathBuf),
    Memory(Vec<u8>),
}

const CHUNK: usize = 4 << 20;

/// Files at least this large are read on two threads (when a split point is found).
const PARALLEL_MIN: u64 = 16 << 20;

/// The error of the reading pass, besides syntax errors (`ParseFailure::Syntax`).
#[derive(Debug)]
enum ReadError {
    /// Reading the input or writing the staged samples.
    Io(std::io::Error),
    /// The other half of the file failed: this half stopped early.
    Cancelled,
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

type ReadResult<T> = Result<T, ParseFailure<ReadError>>;

fn io_fail(e: std::io::Error) -> ParseFailure<ReadError> {
    ParseFailure::Callback(ReadError::Io(e))
}

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

    /// Up to `n` bytes from `offset`.
    fn read_at(&self, offset: u64, n: usize) -> std::io::Result<Vec<u8>> {
        match self {
            Source::Memory(b) => {
                let start = (offset as usize).min(b.len());
                Ok(b[start..(start + n).min(b.len())].to_vec())
            }
            Source::File(p) => {
                let mut f = std::fs::File::open(p)?;
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = vec![0; n];
                let mut got = 0;
                while got < n {
                    let k = f.read(&mut buf[got..])?;
                    if k == 0 {
                        break;
                    }
                    got += k;
                }
                buf.truncate(got);
                Ok(buf)
            }
        }
    }

    /// Feeds the bytes `start..end` to `parser` in 4 MiB windows (memory stays bounded
    /// whatever the size; standard input, already in memory, goes in windows of the same
    /// size so that the progress bar moves) and returns what is left after the last line
    /// break, for [`formats::Parser::finish`]. Stops with `ReadError::Cancelled` when
    /// `cancel` is set.
    fn feed_range(
        &self,
        parser: &mut formats::Parser,
        (start, end): (u64, u64),
        progress: &Progress,
        cancel: &AtomicBool,
        f: &mut impl FnMut(Event<'_>) -> Result<(), ReadError>,
    ) -> ReadResult<Vec<u8>> {
        let mut samples = parser.summary().samples;
        let mut report = |parser: &formats::Parser, bytes: usize| -> ReadResult<()> {
            let now = parser.summary().samples;
            progress.add(bytes as u64, now - samples);
            samples = now;
            if cancel.load(Ordering::Relaxed) {
                return Err(ParseFailure::Callback(ReadError::Cancelled));
            }
            Ok(())
        };
        match self {
            Source::Memory(b) => {
                let b = &b[start as usize..end as usize];
                let (mut pos, mut window) = (0, CHUNK);
                loop {
                    let stop = (pos + window).min(b.len());
                    if stop == b.len() {
                        let used = parser.feed(&b[pos..], &mut *f)?;
                        report(parser, b.len() - pos)?;
                        return Ok(b[pos + used..].to_vec());
                    }
                    let used = parser.feed(&b[pos..stop], &mut *f)?;
                    if used == 0 {
                        // A line longer than the window.
                        window *= 2;
                    }
                    pos += used;
                    report(parser, used)?;
                }
            }
            Source::File(p) => {
                let mut file = std::fs::File::open(p).map_err(io_fail)?;
                file.seek(SeekFrom::Start(start)).map_err(io_fail)?;
                let mut left = end - start;
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                loop {
                    if filled == buf.len() {
                        // A line longer than the window: grow (the parser bounds line length).
                        buf.resize(buf.len() * 2, 0);
                    }
                    let want = (buf.len() - filled).min(left.try_into().unwrap_or(usize::MAX));
                    let n = if want == 0 {
                        0
                    } else {
                        file.read(&mut buf[filled..filled + want])
                            .map_err(io_fail)?
                    };
                    if n == 0 {
                        buf.truncate(filled);
                        return Ok(buf);
                    }
                    filled += n;
                    left -= n as u64;
                    let used = parser.feed(&buf[..filled], &mut *f)?;
                    report(parser, n)?;
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                }
            }
        }
    }

    /// Where to cut the source in two for the reading threads: the first line start from
    /// the middle on ([`formats::Parser::can_continue_with`] decides later whether the cut
    /// stands). `None` for CSV (its header carries over) or a middle line longer than a
    /// window.
    fn split_point(&self, format: Format, len: u64) -> std::io::Result<Option<u64>> {
        if format == Format::Csv {
            return Ok(None);
        }
        let mid = len / 2;
        let w = self.read_at(mid, CHUNK)?;
        Ok(w.iter()
            .position(|&c| c == b'\n')
            .map(|i| mid + i as u64 + 1)
            .filter(|&at| at < len))
    }
}

/// Reads, checks and stages one file: nothing is written.
pub fn stage_file(file: &Path, args: &IngestArgs) -> Result<Staged> {
    let (name, source) = Source::open(file)?;
    let format = if args.format == "auto" {
        let fname = (name != "<stdin>").then_some(name.as_str());
        let head = source.read_at(0, 64 << 10)?;
        formats::detect_format(fname, &head)
            .ok_or_else(|| anyhow!("{name}: cannot tell the format; pass --format"))?
    } else {
        Format::parse(&args.format).expect("validated by clap")
    };
    let mut opts = ParseOptions::new(format);
    opts.precision = Precision::parse(&args.precision).expect("validated by clap");
    opts.skip_invalid = args.skip_invalid;
    let started = Instant::now();
    let len = source.len();
    let split = if len >= PARALLEL_MIN {
        source
            .split_point(format, len)
            .with_context(|| format!("reading {name}"))?
    } else {
        None
    };
    let progress = Progress::new(args, "reading", &name, len, "{bytes}/{total_bytes}");
    let read = read_source(&source, &opts, split, &progress, stage::Spill::MEM_LIMIT);
    progress.finish();
    let (segments, summary) = match read {
        Ok(r) => r,
        Err(ParseFailure::Syntax(e)) => bail!("{name}:{}:{}: {}", e.line, e.column, e.message),
        Err(ParseFailure::Callback(ReadError::Io(e))) => return Err(anyhow!("{name}: {e}")),
        Err(ParseFailure::Callback(ReadError::Cancelled)) => {
            unreachable!("only a half of a file is cancelled, never the whole")
        }
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
    Ok(Staged {
        name,
        format,
        segments,
        samples: summary.samples,
        started,
    })
}

/// Parses the whole source into staged segments. With a split point, the two halves are
/// parsed at once on two threads; the second half's result is kept only if it is exactly
/// what one parser reading the whole file would have reported
/// ([`formats::Parser::can_continue_with`], no error in either half). Otherwise the first
/// half's parser goes on through the second half (as a single pass would have): errors,
/// their positions and the `--skip-invalid` counts are always those of a single pass.
fn read_source(
    source: &Source,
    opts: &ParseOptions,
    split: Option<u64>,
    progress: &Progress,
    mem_limit: usize,
) -> ReadResult<(Vec<(stage::Stage, usize)>, formats::ParseSummary)> {
    let len = source.len();
    let never = AtomicBool::new(false);
    let Some(at) = split else {
        let mut st = stage::Stage::new(mem_limit);
        let mut parser = formats::Parser::new(opts);
        let mut f = |ev: Event<'_>| st.event(ev).map_err(ReadError::Io);
        let rest = source.feed_range(&mut parser, (0, len), progress, &never, &mut f)?;
        let summary = parser.finish(&rest, f)?;
        return Ok((vec![(st, 0)], summary));
    };
    let cancel = AtomicBool::new(false);
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| -> ReadResult<_> {
            let mut st = stage::Stage::new(mem_limit);
            let mut parser = formats::Parser::new(opts);
            let mut f = |ev: Event<'_>| st.event(ev).map_err(ReadError::Io);
            let rest = source.feed_range(&mut parser, (at, len), progress, &cancel, &mut f)?;
            Ok((st, parser, rest))
        });
        let first = (|| -> ReadResult<_> {
            let mut st = stage::Stage::new(mem_limit);
            let mut parser = formats::Parser::new(opts);
            let mut f = |ev: Event<'_>| st.event(ev).map_err(ReadError::Io);
            let rest = source.feed_range(&mut parser, (0, at), progress, &never, &mut f)?;
            Ok((st, parser, rest))
        })();
        if first.is_err() {
            cancel.store(true, Ordering::Relaxed);
        }
        let second = second.join().expect("the reading thread does not panic");
        (first, second)
    });
    // An error in the first half is the first error of the file.
    let (mut st1, mut p1, rest) = first?;
    let lines1 = p1.summary().lines;
    let samples1 = p1.summary().samples;
    match second {
        Ok((mut st2, p2, rest2))
            if rest.is_empty()
                && p1.summary().error_count == 0
                && p2.summary().error_count == 0
                && p1.can_continue_with(&p2) =>
        {
            // The end-of-input checks: an error there is reported by the single pass below,
            // with its line counted from the start of the file.
            let end = p2.finish(&rest2, |ev| st2.event(ev).map_err(ReadError::Io));
            match end {
                Ok(mut summary) if summary.error_count == 0 => {
                    summary.lines += lines1;
                    summary.samples += samples1;
                    return Ok((vec![(st1, 0), (st2, lines1)], summary));
                }
                Err(ParseFailure::Callback(ReadError::Io(e))) => return Err(io_fail(e)),
                _ => {}
            }
        }
        Err(ParseFailure::Callback(ReadError::Io(e))) => return Err(io_fail(e)),
        _ => {}
    }
    // Read the second half again, continuing the first half's parser.
    let from = at - rest.len() as u64;
    let mut f = |ev: Event<'_>| st1.event(ev).map_err(ReadError::Io);
    let rest = source.feed_range(&mut p1, (from, len), progress, &never, &mut f)?;
    let summary = p1.finish(&rest, f)?;
    Ok((vec![(st1, 0)], summary))
}

/// Writes a staged file; returns the number of samples written.
///
/// Decoding and committing overlap: this thread decodes the next batch from the staged
/// form into one appender while a second thread writes, syncs and applies the previous one
/// (two appenders go back and forth, so batch memory is two batches, reused). Batches are
/// committed in file order, `--batch` samples each (the last one fewer); metadata goes in
/// the batch of the sample that follows it in the file, as when it was read.
pub fn write_staged<'db>(db: &'db Db, staged: Staged, args: &IngestArgs) -> Result<u64> {
    let Staged {
        name,
        format,
        segments,
        samples: total,
        started,
    } = staged;
    let mut refs = KeyMap::default();
    // Full appenders (with the line of their last sample) to the committer, empty ones back.
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Appender<'db>, usize)>(1);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel(2);
    for _ in 0..2 {
        empty_tx.send(db.appender()).expect("the receiver is here");
    }
    let progress = Progress::new(args, "writing", &name, total, "{pos}/{len} samples");
    let written = std::thread::scope(|scope| -> Result<u64> {
        let committer = scope.spawn(|| -> Result<u64> {
            let mut written = 0u64;
            for (mut app, last_line) in full_rx {
                let n = app.len() as u64;
                app.commit().with_context(|| {
                    format!(
                        "{name}: writing a batch ending at line {last_line} ({written} samples of this file already committed)"
                    )
                })?;
                written += n;
                progress.add(n, n);
                // The decoder may have stopped (on an error of its own): nothing to hand back.
                let _ = empty_tx.send(app);
            }
            Ok(written)
        });
        let known_meta = db.metadata();
        // A closed channel means the committer failed: its error is reported.
        let stopped = || anyhow!("the writer stopped");
        let app = empty_rx.recv().map_err(|_| stopped())?;
        let mut last_line = 0;
        let res = (|mut app: Appender<'db>| -> Result<Appender<'db>> {
            for (st, lines_before) in segments {
                let damaged = || anyhow!("{name}: the staged samples are damaged");
                let mut ids: Vec<Option<SeriesRef>> = vec![None; st.series()];
                let mut meta = st.meta.into_iter().peekable();
                let mut reader = st
                    .out
                    .into_reader()
                    .with_context(|| format!("{name}: reading the staged samples back"))?;
                let (mut t, mut line, mut n) = (0i64, lines_before, 0u64);
                let mut cur = None;
                while let Some(item) = reader
                    .next_item()
                    .with_context(|| format!("{name}: reading the staged samples back"))?
                {
                    match item {
                        stage::Item::Series(id) => {
                            let slot = ids.get_mut(id as usize).ok_or_else(damaged)?;
                            cur = Some(match slot {
                                Some(r) => *r,
                                None => {
                                    let key = &st.key_list[id as usize];
                                    let r = match refs.get(key) {
                                        Some(r) => *r,
                                        None => {
                                            let labels = formats::parse_series_key(key)
                                                .map_err(|e| anyhow!("{name}: {}", e.message))?;
                                            let r = db.series_ref(&labels)?;
                                            refs.insert(key.clone(), r);
                                            r
                                        }
                                    };
                                    *slot = Some(r);
                                    r
                                }
                            });
                        }
                        stage::Item::Sample { dt, dline, v } => {
                            t = t.wrapping_add(dt);
                            line += dline as usize;
                            while let Some((_, metric, m)) = meta.next_if(|m| m.0 <= n) {
                                let (metric, m) = with_known_kind(&known_meta, metric, m);
                                app.set_metadata(&metric, m);
                            }
                            app.add(cur.ok_or_else(damaged)?, t, v);
                            last_line = line;
                            n += 1;
                            if app.len() >= args.batch {
                                full_tx.send((app, last_line)).map_err(|_| stopped())?;
                                app = empty_rx.recv().map_err(|_| stopped())?;
                            }
                        }
                    }
                }
                for (_, metric, m) in meta {
                    let (metric, m) = with_known_kind(&known_meta, metric, m);
                    app.set_metadata(&metric, m);
                }
            }
            Ok(app)
        })(app);
        let res = res.and_then(|app| full_tx.send((app, last_line)).map_err(|_| stopped()));
        drop(full_tx);
        let committed = committer.join().expect("the committer does not panic");
        match res {
            Ok(()) => committed,
            Err(e) => Err(committed.err().unwrap_or(e)),
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

/// Metadata read from a file keeps the KPI/health kind already set in the database (no text
/// format carries it).
fn with_known_kind(
    known: &std::collections::BTreeMap<String, MetricMeta>,
    metric: String,
    mut m: MetricMeta,
) -> (String, MetricMeta) {
    if let Some(old) = known.get(&metric) {
        m.kind = old.kind;
    }
    (metric, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything a read gives: samples (key, time, value bits, line), metadata (samples
    /// before it, metric, help), and the summary's counts; or the error's position.
    type Read = (
        Vec<(String, i64, u64, usize)>,
        Vec<(u64, String, String)>,
        (usize, u64, u64),
    );

    fn read_all(
        source: &Source,
        opts: &ParseOptions,
        split: Option<u64>,
        mem_limit: usize,
    ) -> Result<Read, (usize, usize, String)> {
        let progress = Progress::hidden();
        let (segments, summary) = match read_source(source, opts, split, &progress, mem_limit) {
            Ok(r) => r,
            Err(ParseFailure::Syntax(e)) => return Err((e.line, e.column, e.message)),
            Err(ParseFailure::Callback(e)) => panic!("{e:?}"),
        };
        let (mut samples, mut meta) = (Vec::new(), Vec::new());
        for (st, lines_before) in segments {
            let base = samples.len() as u64;
            meta.extend(
                st.meta
                    .iter()
                    .map(|(n, metric, m)| (base + n, metric.clone(), m.help.clone())),
            );
            let keys = st.key_list.clone();
            let mut r = st.out.into_reader().unwrap();
            let (mut t, mut line, mut cur) = (0i64, lines_before, 0);
            while let Some(item) = r.next_item().unwrap() {
                match item {
                    stage::Item::Series(id) => cur = id as usize,
                    stage::Item::Sample { dt, dline, v } => {
                        t = t.wrapping_add(dt);
                        line += dline as usize;
                        samples.push((keys[cur].to_string(), t, v.to_bits(), line));
                    }
                }
            }
        }
        assert_eq!(samples.len() as u64, summary.samples);
        Ok((
            samples,
            meta,
            (summary.lines, summary.skipped_lines, summary.error_count),
        ))
    }

    /// Standard input is fed in windows like a file: same samples, same error position,
    /// lines longer than a window included; staged in memory or spilled, the same.
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
        for (body, fails) in [(good, false), (bad, true)] {
            let path = dir.path().join("f.om");
            std::fs::write(&path, &body).unwrap();
            let from_file = read_all(&Source::File(path.clone()), &opts, None, 1 << 16);
            let from_memory = read_all(&Source::Memory(body.into_bytes()), &opts, None, usize::MAX);
            assert_eq!(from_file, from_memory);
            match &from_file {
                Ok((samples, _, _)) => {
                    assert!(!fails);
                    assert!(samples.len() as u64 > i);
                }
                Err(e) => assert!(fails, "{e:?}"),
            }
        }
    }

    /// Reading a file in two halves gives exactly what one pass gives, wherever the cut
    /// falls (at a line where the parser can restart or not): samples, lines, metadata,
    /// errors and their positions, `--skip-invalid` counts, in every format.
    #[test]
    fn reading_in_two_halves_equals_one_pass() {
        let om = "# TYPE a counter\n# HELP a first\na_total{x=\"1\"} 1 1700000000\na_created{x=\"1\"} 1 1700000000\na_total{x=\"1\"} 2 1700000015.5\n\
# TYPE b gauge\nb 1 1700000000\nb{y=\"2\"} 3 1700000001\n# HELP b later help\nb 4 1700000002\n\
# TYPE c counter\n# UNIT c seconds\n# TYPE d gauge\nd 5 1700000003\n\
# HELP d again\nd 6 1700000004\n# TYPE a_x gauge\na_x 7 1700000005\n# EOF\n";
        let prom = "# HELP h help\n# TYPE h counter\nh 1 1700000000000\n# a comment\n\
# TYPE g gauge\ng{a=\"b\"} 2\ng 3 1700000000001\n# HELP g g help\n# TYPE k untyped\nk 4 1700000000002\n";
        let lp = "cpu,host=a usage=1,idle=2 1700000000000000000\n# c\ncpu,host=b usage=3 1700000000000000001\n\nmem free=4i 1700000000000000002\n";
        let csv = "timestamp,metric,value,job\n1700000000,up,1,a\n1700000015,up,0,\n";
        let cases: Vec<(Format, String)> = vec![
            (Format::OpenMetrics, om.to_string()),
            // Errors: a bad value in the middle, content after # EOF, no # EOF.
            (Format::OpenMetrics, om.replace("b 4 ", "b x ")),
            (Format::OpenMetrics, format!("{om}d 1 1\n")),
            (Format::OpenMetrics, om.replace("# EOF\n", "")),
            (
                Format::OpenMetrics,
                om.replace("# TYPE d gauge", "# TYPE d gauge x"),
            ),
            (Format::Prometheus, prom.to_string()),
            (Format::Prometheus, prom.replace("g 3 ", "g{ 3 ")),
            (Format::Influx, lp.to_string()),
            (Format::Influx, lp.replace("usage=3", "usage=\"s\"")),
            (Format::Csv, csv.to_string()),
        ];
        for (format, text) in cases {
            for skip_invalid in [false, true] {
                let mut opts = ParseOptions::new(format);
                opts.now_ms = 1_700_000_000_000;
                opts.skip_invalid = skip_invalid;
                let source = Source::Memory(text.clone().into_bytes());
                let whole = read_all(&source, &opts, None, usize::MAX);
                let mut starts: Vec<usize> = vec![];
                for (i, c) in text.bytes().enumerate() {
                    if c == b'\n' && i + 1 < text.len() {
                        starts.push(i + 1);
                    }
                }
                let mut kept_halves = 0;
                for at in starts {
                    let progress = Progress::hidden();
                    if let Ok((segments, _)) =
                        read_source(&source, &opts, Some(at as u64), &progress, 40)
                    {
                        kept_halves += usize::from(segments.len() == 2);
                    }
                    let halves = read_all(&source, &opts, Some(at as u64), 40);
                    assert_eq!(
                        halves, whole,
                        "{format} skip_invalid={skip_invalid} cut at {at}:\n{text}"
                    );
                }
                // The cut is taken (two staged halves) for valid input at a restart point.
                if matches!(&whole, Ok((_, _, (_, 0, 0)))) && format != Format::Csv {
                    assert!(
                        kept_halves > 0,
                        "{format}: never read in two halves\n{text}"
                    );
                }
            }
        }
    }
}
