//! The database: open/recover, append, select, flush, compact, delete, retention.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::block::{write_block, Block, BlockStats, ChunkMeta, EncodedChunk};
use crate::error::{Error, Result};
use crate::head::{cut_chunks, merge_runs, Head};
use crate::labels::{Labels, Matcher, MetricMeta, SeriesData};
use crate::manifest::{Manifest, Tombstone};
use crate::vfs::{OsVfs, Vfs};
use crate::wal::{self, Deletion, Record, ReplayNotice, WalWriter};

const HOUR: i64 = 3_600_000;

/// When acknowledged writes become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every commit syncs the WAL before it returns: an acknowledged batch survives kill -9
    /// and power loss. The default.
    Batch,
    /// A background thread syncs the WAL at this interval: a crash loses at most the
    /// batches of the last interval (whole batches, never part of one).
    Interval(Duration),
    /// Never sync on commit (only at flush, `sync()` and close): a power loss may lose
    /// everything since then; a process crash loses nothing the OS already has.
    Never,
}

/// Database options. Every field has a documented default.
#[derive(Debug, Clone)]
pub struct Options {
    /// WAL sync policy. Default [`SyncPolicy::Batch`].
    pub sync: SyncPolicy,
    /// Time range of a freshly flushed block, in ms. Default 2 h. Longer blocks mean fewer
    /// files; shorter ones mean finer retention.
    pub block_range_ms: i64,
    /// How far behind a series' newest sample a write may land and still be accepted
    /// (merged at read and flush time). Default 1 h; older writes are rejected.
    pub ooo_window_ms: i64,
    /// Most samples in one chunk. Default 1024: larger chunks compress and decode better,
    /// smaller ones bound the raw open chunk (16 bytes per sample per series).
    pub chunk_samples: usize,
    /// Flush the head to blocks when it holds this many samples. Default 8 M (about
    /// 130 MB of WAL; bounds replay time and memory).
    pub flush_samples: u64,
    /// Flush the head to blocks when its samples take about this much memory (encoded
    /// closed chunks plus 16 bytes per sample of the open ones). Default 16 MiB: this bounds
    /// the head of hard-to-compress data (full-precision floats, ~6.5 bytes a sample) before
    /// `flush_samples` does, and keeps `tsq ingest` under 100 MiB.
    pub flush_bytes: u64,
    /// Drop blocks older than this (relative to the newest sample). Default: keep forever.
    pub retention_ms: Option<i64>,
    /// Drop the oldest blocks while blocks take more than this. Default: no limit.
    pub retention_bytes: Option<u64>,
    /// WAL segment size. Default 16 MiB: replay maps one segment at a time, so this bounds
    /// what replay adds to memory.
    pub wal_segment_bytes: u64,
    /// Open without the writer lock; writes are refused. Default false.
    pub read_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Batch,
            block_range_ms: 2 * HOUR,
            ooo_window_ms: HOUR,
            chunk_samples: 1024,
            flush_samples: 8_000_000,
            flush_bytes: 16 << 20,
            retention_ms: None,
            retention_bytes: None,
            wal_segment_bytes: 16 << 20,
            read_only: false,
        }
    }
}

/// Builds a [`Db`] with non-default options.
#[derive(Default)]
pub struct Builder {
    opts: Options,
    vfs: Option<Arc<dyn Vfs>>,
}

impl Builder {
    /// WAL sync policy (default: per batch).
    pub fn sync(mut self, s: SyncPolicy) -> Self {
        self.opts.sync = s;
        self
    }
    /// Block range in ms (default 2 h).
    pub fn block_range_ms(mut self, ms: i64) -> Self {
        self.opts.block_range_ms = ms.max(1);
        self
    }
    /// Out-of-order window in ms (default 1 h).
    pub fn ooo_window_ms(mut self, ms: i64) -> Self {
        self.opts.ooo_window_ms = ms.max(0);
        self
    }
    /// Samples per chunk (default 1024).
    pub fn chunk_samples(mut self, n: usize) -> Self {
        self.opts.chunk_samples = n.clamp(1, 65_536);
        self
    }
    /// Head size that triggers a flush (default 8 M samples).
    pub fn flush_samples(mut self, n: u64) -> Self {
        self.opts.flush_samples = n.max(1);
        self
    }
    /// Head memory that triggers a flush (default 16 MiB).
    pub fn flush_bytes(mut self, n: u64) -> Self {
        self.opts.flush_bytes = n.max(1);
        self
    }
    /// Retention by age (default: none).
    pub fn retention_ms(mut self, ms: Option<i64>) -> Self {
        self.opts.retention_ms = ms;
        self
    }
    /// Retention by size (default: none).
    pub fn retention_bytes(mut self, b: Option<u64>) -> Self {
        self.opts.retention_bytes = b;
        self
    }
    /// WAL segment size (default 16 MiB).
    pub fn wal_segment_bytes(mut self, b: u64) -> Self {
        self.opts.wal_segment_bytes = b.max(4096);
        self
    }
    /// Read-only open (default false).
    pub fn read_only(mut self, ro: bool) -> Self {
        self.opts.read_only = ro;
        self
    }
    /// Use another file system (tests: [`crate::MemVfs`]).
    pub fn vfs(mut self, vfs: Arc<dyn Vfs>) -> Self {
        self.vfs = Some(vfs);
        self
    }
    /// Opens (creating if needed) the database in `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        let vfs = self.vfs.unwrap_or_else(|| Arc::new(OsVfs));
        Db::open_inner(vfs, path.as_ref(), self.opts)
    }
}

/// A handle to a series, valid for the life of the [`Db`] that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesRef(pub u32);

struct LiveBlock {
    seq: u64,
    block: Arc<Block>,
}

struct State {
    head: Head,
    blocks: Vec<Arc<LiveBlock>>,
    manifest: Manifest,
}

struct Writer {
    /// The segment being written; created on the first write, so that opening a database
    /// and failing before any write leaves the directory as it was.
    wal: Option<WalWriter>,
    /// Sequence number for the next segment.
    next_seg: u64,
    /// Number of records appended so far (the log sequence number of the last one).
    written_lsn: u64,
    /// A WAL write failed: start a fresh segment before the next record.
    wal_broken: bool,
    /// The current series-id epoch (docs/format/wal.md): every segment the writer starts
    /// afresh (first write after open, after a flush, after a failed write) begins a new one
    /// with an epoch record, and a record names a series by id only after declaring its
    /// labels in the same epoch.
    epoch: u64,
}

struct Inner {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    opts: Options,
    /// Shared with the `SyncPolicy::Interval` thread, which holds only this and `stop`: were it
    /// to hold the whole `Inner`, dropping the last `Db` handle while it synced would leave
    /// the final sync (and the directory lock) to that thread, after `drop` returned.
    writer: Arc<Mutex<Writer>>,
    /// Records up to this LSN are durable. Held while a sync runs, so that concurrent
    /// committers wait for that sync instead of starting their own (group commit).
    synced_lsn: Mutex<u64>,
    state: RwLock<State>,
    notices: Vec<ReplayNotice>,
    stop: Arc<AtomicBool>,
    _lock: Option<Box<dyn Send + Sync>>,
}

/// An embedded tsq database. Cloning is cheap and shares the database; it is `Send + Sync`.
///
/// One writer at a time (appender commits, flushes, compactions and deletions are
/// serialised, but a commit's fsync runs outside that lock and covers every batch appended
/// before it: group commit); readers see consistent snapshots and never wait for a sync.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// Summary of a database, for `tsq inspect`.
#[derive(Debug, Clone)]
pub struct DbInfo {
    /// Series in the head.
    pub head_series: usize,
    /// Samples in the head.
    pub head_samples: u64,
    /// Head time range (None when empty).
    pub head_range: Option<(i64, i64)>,
    /// Blocks: (file name, sequence number, stats).
    pub blocks: Vec<(String, u64, BlockStats)>,
    /// WAL segments and their sizes.
    pub wal_segments: Vec<(String, u64)>,
}

/// What `commit` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// Samples written.
    pub samples: usize,
}

/// Samples of one series from one source (a block or the head), in time order, as columns.
#[derive(Default)]
struct Run {
    ts: Vec<i64>,
    vs: Vec<f64>,
}

impl Run {
    /// Of the samples from index `from` on, keeps those in `[mint, maxt]`.
    fn keep_between(&mut self, from: usize, mint: i64, maxt: i64) {
        let hi = from + self.ts[from..].partition_point(|&t| t <= maxt);
        self.ts.truncate(hi);
        self.vs.truncate(hi);
        let lo = from + self.ts[from..].partition_point(|&t| t < mint);
        self.ts.drain(from..lo);
        self.vs.drain(from..lo);
    }

    /// Of the samples from index `from` on, drops those in `[mint, maxt]` (a tombstone).
    fn delete_between(&mut self, from: usize, mint: i64, maxt: i64) {
        let lo = from + self.ts[from..].partition_point(|&t| t < mint);
        let hi = from + self.ts[from..].partition_point(|&t| t <= maxt);
        self.ts.drain(lo..hi);
        self.vs.drain(lo..hi);
    }

    /// One series from its runs in precedence order (a later run wins at equal timestamps).
    fn merge(mut runs: Vec<Run>) -> (Vec<i64>, Vec<f64>) {
        if runs.len() == 1 {
            let r = runs.pop().expect("one run");
            return (r.ts, r.vs);
        }
        let disjoint = runs.windows(2).all(|w| w[0].ts.last() < w[1].ts.first());
        if disjoint {
            let n = runs.iter().map(|r| r.ts.len()).sum();
            let (mut ts, mut vs) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for r in runs {
                ts.extend_from_slice(&r.ts);
                vs.extend_from_slice(&r.vs);
            }
            return (ts, vs);
        }
        let pairs: Vec<Vec<(i64, f64)>> = runs
            .into_iter()
            .map(|r| r.ts.into_iter().zip(r.vs).collect())
            .collect();
        merge_runs(&pairs).into_iter().unzip()
    }
}

/// Where one series' samples in a [`Selection`] come from.
enum Source {
    /// Chunks of a block overlapping the selected range, and the time ranges that later
    /// deletions removed from them.
    Block {
        block: Arc<LiveBlock>,
        chunks: Vec<ChunkMeta>,
        deleted: Vec<(i64, i64)>,
    },
    /// The head's samples in the range, copied when the selection was made.
    Head(Run),
}

/// The series a [`Db::select_lazy`] matched, in label order, each decoded only when read.
pub struct Selection {
    series: Vec<(Labels, Vec<Source>)>,
    mint: i64,
    maxt: i64,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("series", &self.series.len())
            .field("mint", &self.mint)
            .field("maxt", &self.maxt)
            .finish()
    }
}

impl Selection {
    /// Number of series (some may turn out to have no sample in the range: deletions).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series matched.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Labels of series `i` (`i < len()`).
    pub fn labels(&self, i: usize) -> &Labels {
        &self.series[i].0
    }

    /// Upper bound of the samples series `i` holds in the range (whole chunks counted).
    pub fn samples_hint(&self, i: usize) -> usize {
        self.series[i]
            .1
            .iter()
            .map(|s| match s {
                Source::Block { chunks, .. } => chunks.iter().map(|m| m.count as usize).sum(),
                Source::Head(run) => run.ts.len(),
            })
            .sum()
    }

    /// Decodes series `i` into `ts` and `vs`, replacing what they held but keeping their
    /// capacity: a caller reading series after series into the same buffers allocates
    /// (and page-faults) once. The result may be empty when deletions removed every
    /// sample in the range.
    pub fn read(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
        let (mint, maxt) = (self.mint, self.maxt);
        ts.clear();
        vs.clear();
        // The first run decodes into the caller's buffers.
        let mut runs: Vec<Run> = vec![Run {
            ts: std::mem::take(ts),
            vs: std::mem::take(vs),
        }];
        let mut result = Ok(());
        for src in &self.series[i].1 {
            match src {
                Source::Block {
                    block,
                    chunks,
                    deleted,
                } => {
                    // Samples that follow the previous run's are decoded onto its end, so
                    // that a series spread over blocks is not copied again to merge.
                    let last = runs.last().expect("never empty");
                    let follows =
                        last.ts.is_empty() || last.ts.last().is_some_and(|&t| t < chunks[0].min_t);
                    if !follows {
                        runs.push(Run::default());
                    }
                    let run = runs.last_mut().expect("never empty");
                    let from = run.ts.len();
                    let n: usize = chunks.iter().map(|m| m.count as usize).sum();
                    run.ts.reserve(n);
                    run.vs.reserve(n);
                    for m in chunks {
                        if let Err(e) = block.block.decode_chunk(m, &mut run.ts, &mut run.vs) {
                            result = Err(e);
                            break;
                        }
                    }
                    if result.is_err() {
                        break;
                    }
                    run.keep_between(from, mint, maxt);
                    for &(dmin, dmax) in deleted {
                        run.delete_between(from, dmin, dmax);
                    }
                }
                Source::Head(h) => {
                    if runs.last().expect("never empty").ts.is_empty() {
                        let run = runs.last_mut().expect("never empty");
                        run.ts.extend_from_slice(&h.ts);
                        run.vs.extend_from_slice(&h.vs);
                    } else {
                        runs.push(Run {
                            ts: h.ts.clone(),
                            vs: h.vs.clone(),
                        });
                    }
                }
            }
        }
        if runs.len() == 1 || result.is_err() {
            let first = runs.swap_remove(0);
            *ts = first.ts;
            *vs = first.vs;
            if result.is_err() {
                ts.clear();
                vs.clear();
            }
            return result;
        }
        runs.retain(|r| !r.ts.is_empty());
        (*ts, *vs) = Run::merge(runs);
        Ok(())
    }

    /// Like [`Selection::read`], but the chunks for which `summarise` is true are not
    /// decoded: their metadata (count, min, max, sum, first, last, flags) is appended to
    /// `summaries` instead (cleared first), in time order, and their samples are absent
    /// from `ts`/`vs`. Aggregations over whole chunks (`max_over_time` of a long window)
    /// read the statistics instead of the samples this way.
    ///
    /// Only chunks that lie wholly inside the selected range, hold no staleness marker and
    /// are not overridden are offered to `summarise`: when the series' sources overlap in
    /// time (a later block or the head rewrote samples) or a deletion touches them, every
    /// chunk is decoded and `summaries` stays empty.
    pub fn read_summarised(
        &self,
        i: usize,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
        summaries: &mut Vec<ChunkMeta>,
        summarise: &dyn Fn(&ChunkMeta) -> bool,
    ) -> Result<()> {
        summaries.clear();
        let sources = &self.series[i].1;
        if !self.simple(i) {
            return self.read(i, ts, vs);
        }
        let (mint, maxt) = (self.mint, self.maxt);
        ts.clear();
        vs.clear();
        for src in sources {
            match src {
                Source::Block { block, chunks, .. } => {
                    for m in chunks {
                        let whole = m.min_t >= mint && m.max_t <= maxt;
                        if whole && m.flags & crate::block::FLAG_STALE == 0 && summarise(m) {
                            summaries.push(*m);
                            continue;
                        }
                        let from = ts.len();
                        if let Err(e) = block.block.decode_chunk(m, ts, vs) {
                            ts.clear();
                            vs.clear();
                            summaries.clear();
                            return Err(e);
                        }
                        let mut run = Run {
                            ts: std::mem::take(ts),
                            vs: std::mem::take(vs),
                        };
                        run.keep_between(from, mint, maxt);
                        *ts = run.ts;
                        *vs = run.vs;
                    }
                }
                Source::Head(h) => {
                    ts.extend_from_slice(&h.ts);
                    vs.extend_from_slice(&h.vs);
                }
            }
        }
        Ok(())
    }

    /// Whether series `i`'s sources follow each other in time without overlap and no
    /// deletion touches them: then a chunk's statistics stand for its samples.
    fn simple(&self, i: usize) -> bool {
        let mut last = i64::MIN;
        for src in &self.series[i].1 {
            let (first, end) = match src {
                Source::Block {
                    chunks, deleted, ..
                } => {
                    if !deleted.is_empty() {
                        return false;
                    }
                    let end = chunks.iter().map(|m| m.max_t).max().unwrap_or(i64::MIN);
                    (chunks[0].min_t, end)
                }
                Source::Head(h) => (h.ts[0], h.ts[h.ts.len() - 1]),
            };
            if first <= last {
                return false;
            }
            last = end;
        }
        true
    }

    /// Like [`Selection::read`], but may return only a suffix of the samples, as long as it
    /// holds the last sample in the range: what an instant selector evaluated at one time
    /// needs. When the last chunk in the range ends inside it, its last sample comes from the
    /// chunk's statistics without decoding.
    pub fn read_last(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
        if self.simple(i) {
            match self.series[i].1.last() {
                Some(Source::Block { chunks, .. }) => {
                    let m = chunks[chunks.len() - 1];
                    if m.max_t <= self.maxt && m.max_t >= self.mint {
                        ts.clear();
                        vs.clear();
                        ts.push(m.max_t);
                        vs.push(m.last);
                        return Ok(());
                    }
                }
                Some(Source::Head(h)) => {
                    ts.clear();
                    vs.clear();
                    ts.push(h.ts[h.ts.len() - 1]);
                    vs.push(h.vs[h.vs.len() - 1]);
                    return Ok(());
                }
                None => {}
            }
        }
        self.read(i, ts, vs)
    }

    /// Every series with at least one sample, decoded.
    pub fn into_series_data(self) -> Result<Vec<SeriesData>> {
        let mut out = Vec::with_capacity(self.series.len());
        for i in 0..self.series.len() {
            let (mut timestamps, mut values) = (Vec::new(), Vec::new());
            self.read(i, &mut timestamps, &mut values)?;
            if !timestamps.is_empty() {
                out.push(SeriesData {
                    labels: self.series[i].0.clone(),
                    timestamps,
                    values,
                });
            }
        }
        Ok(out)
    }
}

impl Db {
    /// Opens (creating if needed) a database with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::builder().open(path)
    }

    /// Opens a database read-only: no lock, no writes, a snapshot as of opening.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Db> {
        Db::builder().read_only(true).open(path)
    }

    /// Rebuilds a lost or damaged manifest from the blocks on disk (see [`crate::repair`]);
    /// takes the writer lock, so it fails with [`Error::Locked`] while a writer runs. With
    /// `force`, a readable manifest is rebuilt too.
    pub fn repair(path: impl AsRef<Path>, force: bool) -> Result<crate::repair::RepairReport> {
        Db::repair_with(Arc::new(OsVfs), path.as_ref(), force)
    }

    /// [`Db::repair`] through another file system (tests use [`crate::MemVfs`]).
    pub fn repair_with(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        force: bool,
    ) -> Result<crate::repair::RepairReport> {
        if !vfs.exists(dir) {
            return Err(Error::InvalidArgument(format!(
                "no database at {}",
                dir.display()
            )));
        }
        let _lock = Db::writer_lock(&*vfs, dir)?;
        crate::repair::repair_manifest(&*vfs, dir, force)
    }

    /// Takes the single-writer lock of the database at `dir`.
    fn writer_lock(vfs: &dyn Vfs, dir: &Path) -> Result<Box<dyn Send + Sync>> {
        let lock_path = dir.join("LOCK");
        vfs.lock(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked {
                    path: dir.to_path_buf(),
                    holder: e.to_string(),
                }
            } else {
                Error::io("lock", &lock_path, e)
            }
        })
    }

    /// A builder for non-default options.
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn wal_dir(dir: &Path) -> PathBuf {
        dir.join("wal")
    }

    fn blocks_dir(dir: &Path) -> PathBuf {
        dir.join("blocks")
    }

    fn open_inner(vfs: Arc<dyn Vfs>, dir: &Path, opts: Options) -> Result<Db> {
        let wal_dir = Db::wal_dir(dir);
        let blocks_dir = Db::blocks_dir(dir);
        let lock = if opts.read_only {
            if !vfs.exists(dir) {
                return Err(Error::InvalidArgument(format!(
                    "no database at {}",
                    dir.display()
                )));
            }
            None
        } else {
            vfs.create_dir_all(&wal_dir)
                .map_err(|e| Error::io("create", &wal_dir, e))?;
            vfs.create_dir_all(&blocks_dir)
                .map_err(|e| Error::io("create", &blocks_dir, e))?;
            vfs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))?;
            Some(Db::writer_lock(&*vfs, dir)?)
        };
        // A read-only opener races with a writer that may flush (new blocks, WAL
        // truncated) meanwhile: retry until the manifest is the same before and after.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (state, notices, last_seg) = match Db::load(&*vfs, dir, &opts) {
                Ok(x) => x,
                // A writer's flush deleted a WAL segment or block we were about to read:
                // start over from its new manifest.
                Err(Error::Io { ref source, .. })
                    if opts.read_only
                        && source.kind() == std::io::ErrorKind::NotFound
                        && attempt < 5 =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if opts.read_only {
                let again = Manifest::load(&*vfs, dir)?.map(|m| m.encode());
                if again != Some(state.manifest.encode()) && attempt < 5 && again.is_some() {
                    continue;
                }
            }
            let inner = Arc::new(Inner {
                vfs,
                dir: dir.to_path_buf(),
                opts,
                writer: Arc::new(Mutex::new(Writer {
                    wal: None,
                    next_seg: last_seg + 1,
                    written_lsn: 0,
                    wal_broken: false,
                    epoch: 0,
                })),
                synced_lsn: Mutex::new(0),
                state: RwLock::new(state),
                notices,
                stop: Arc::new(AtomicBool::new(false)),
                _lock: lock,
            });
            let db = Db { inner };
            if !db.inner.opts.read_only {
                if let SyncPolicy::Interval(every) = db.inner.opts.sync {
                    db.spawn_syncer(every);
                }
            }
            return Ok(db);
        }
    }

    fn spawn_syncer(&self, every: Duration) {
        let (writer, stop) = (self.inner.writer.clone(), self.inner.stop.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let mut w = writer.lock();
            // The last handle may have been dropped (and made its final sync) meanwhile.
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(wal) = w.wal.as_mut() {
                if wal.sync().is_err() {
                    w.wal_broken = true;
                }
            }
        });
    }

    /// Reads the manifest, opens blocks, replays the WAL.
    fn load(vfs: &dyn Vfs, dir: &Path, opts: &Options) -> Result<(State, Vec<ReplayNotice>, u64)> {
        let blocks_dir = Db::blocks_dir(dir);
        let wal_dir = Db::wal_dir(dir);
        let mut manifest = match Manifest::load(vfs, dir)? {
            Some(m) => m,
            None => {
                // No manifest: a new database, unless blocks exist, in which case deleting
                // them as leftovers would destroy data. Refuse instead.
                let orphans = if vfs.exists(&blocks_dir) {
                    vfs.list(&blocks_dir)
                        .map_err(|e| Error::io("list", &blocks_dir, e))?
                } else {
                    Vec::new()
                };
                if orphans.iter().any(|n| n.ends_with(".blk")) {
                    return Err(Error::corrupted(
                        dir.join(crate::manifest::MANIFEST),
                        0,
                        "missing, but blocks exist; rebuild it with `tsq repair` (Db::repair) before the database can open",
                    ));
                }
                // A new database: write its (empty) manifest first, so that blocks can
                // never exist without one.
                let m = Manifest {
                    next_seq: 1,
                    ..Default::default()
                };
                if !opts.read_only {
                    m.store(vfs, dir)?;
                }
                m
            }
        };
        let mut blocks = Vec::new();
        for (seq, name) in &manifest.blocks {
            let block = Block::open(vfs, &blocks_dir, name)?;
            blocks.push(Arc::new(LiveBlock {
                seq: *seq,
                block: Arc::new(block),
            }));
        }
        if !opts.read_only {
            // Files no manifest names are leftovers of an interrupted flush or compaction.
            let live: std::collections::HashSet<&str> =
                manifest.blocks.iter().map(|(_, n)| n.as_str()).collect();
            for name in vfs
                .list(&blocks_dir)
                .map_err(|e| Error::io("list", &blocks_dir, e))?
            {
                if !live.contains(name.as_str()) {
                    let p = blocks_dir.join(&name);
                    vfs.remove_file(&p)
                        .map_err(|e| Error::io("remove", &p, e))?;
                }
            }
        }
        let mut head = Head::new(opts.chunk_samples, opts.block_range_ms);
        let mut notices = Vec::new();
        let segments: Vec<(u64, String)> = if vfs.exists(&wal_dir) {
            vfs.list(&wal_dir)
                .map_err(|e| Error::io("list", &wal_dir, e))?
                .into_iter()
                .filter_map(|n| n.parse::<u64>().ok().map(|s| (s, n)))
                .collect()
        } else {
            Vec::new()
        };
        let last_seg = segments.last().map(|s| s.0).unwrap_or(0);
        let mut manifest_dirty = false;
        let mut orphans = 0u64;
        // WAL series id -> head series id, for the current epoch. Ids are the writing
        // process's; the head numbers series afresh, densely, in the order they are declared
        // (an id is only a key here, so a crafted one allocates nothing).
        let mut ids = EpochIds::default();
        for (i, (_, name)) in segments.iter().enumerate() {
            let path = wal_dir.join(name);
            let data = vfs.map(&path).map_err(|e| Error::io("open", &path, e))?;
            let bytes: &[u8] = (*data).as_ref();
            if !bytes.is_empty() && !wal::first_record_intact(bytes) {
                // Perhaps an epoch record was lost: forget the previous epoch's ids.
                ids.clear();
            }
            let scan = wal::scan_segment(&path, bytes, &mut notices, |rec| {
                match rec {
                    Record::Batch {
                        series,
                        meta,
                        samples,
                    } => {
                        for (id, labels) in &series {
                            if labels.is_empty() {
                                // A placeholder (written before epochs existed) for a series
                                // whose declaration was lost: samples naming it are dropped.
                                continue;
                            }
                            let hid = head.get_or_create(labels);
                            if ids.insert(*id, hid) != hid {
                                return Err(Error::corrupted(
                                    &path,
                                    0,
                                    format!("series id {id} reused for {labels}"),
                                ));
                            }
                        }
                        for (name, m) in meta {
                            manifest.set_meta(name, m);
                        }
                        for (id, t, v) in samples {
                            match ids.get(id) {
                                Some(hid) => {
                                    head.append(hid, t, v);
                                }
                                None => orphans += 1,
                            }
                        }
                    }
                    Record::Epoch => ids.clear(),
                    Record::Delete(d) => {
                        head.delete(&d.matchers, d.mint, d.maxt);
                        if !manifest.tombstones.iter().any(|t| t.seq == d.seq) {
                            manifest.next_seq = manifest.next_seq.max(d.seq + 1);
                            manifest.tombstones.push(Tombstone {
                                seq: d.seq,
                                matchers: d.matchers,
                                mint: d.mint,
                                maxt: d.maxt,
                            });
                            manifest_dirty = true;
                        }
                    }
                }
                Ok(())
            })?;
            if orphans > 0 {
                notices.push(ReplayNotice {
                    segment: path.clone(),
                    offset: 0,
                    message: format!(
                        "{orphans} samples name a series whose declaration was lost (damaged earlier record); dropped"
                    ),
                });
                orphans = 0;
            }
            if scan.torn_tail {
                let is_last = i + 1 == segments.len();
                if is_last {
                    notices.push(ReplayNotice {
                        segment: path.clone(),
                        offset: scan.good_len,
                        message: format!(
                            "torn tail: {} bytes of an incomplete last write dropped",
                            bytes.len() as u64 - scan.good_len
                        ),
                    });
                } else {
                    notices.push(ReplayNotice {
                        segment: path.clone(),
                        offset: scan.good_len,
                        message: format!(
                            "segment ends with {} bytes of an incomplete or damaged record (a failed write, or damage); skipped",
                            bytes.len() as u64 - scan.good_len
                        ),
                    });
                }
                if !opts.read_only {
                    drop(data);
                    vfs.truncate(&path, scan.good_len)
                        .map_err(|e| Error::io("truncate", &path, e))?;
                }
            }
        }
        if manifest_dirty && !opts.read_only {
            manifest.store(vfs, dir)?;
        }
        Ok((
            State {
                head,
                blocks,
                manifest,
            },
            notices,
            last_seg,
        ))
    }

    /// What recovery found when opening (torn tails truncated, damaged records skipped).
    pub fn recovery_notices(&self) -> &[ReplayNotice] {
        &self.inner.notices
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// A new appender. Appenders buffer samples until `commit`.
    pub fn appender(&self) -> Appender<'_> {
        Appender {
            db: self,
            samples: Vec::new(),
            meta: Vec::new(),
        }
    }

    /// The ref of a series, creating it if new. Refs stay valid for this `Db`'s life.
    pub fn series_ref(&self, labels: &Labels) -> Result<SeriesRef> {
        if labels.is_empty() {
            return Err(Error::InvalidArgument(
                "a series needs at least one label".into(),
            ));
        }
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(id) = self.inner.state.read().head.lookup(labels) {
            return Ok(SeriesRef(id));
        }
        Ok(SeriesRef(
            self.inner.state.write().head.get_or_create(labels),
        ))
    }

    fn commit(
        &self,
        samples: &[(u32, i64, f64)],
        meta: &[(String, MetricMeta)],
    ) -> Result<CommitInfo> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if samples.is_empty() && meta.is_empty() {
            return Ok(CommitInfo::default());
        }
        let mut w = self.inner.writer.lock();
        // The epoch must be settled before deciding which series this record declares.
        self.ensure_segment(&mut w)?;
        let epoch = w.epoch;
        let new_series: Vec<(u32, Labels)>;
        {
            let st = self.inner.state.read();
            let head = &st.head;
            let window = self.inner.opts.ooo_window_ms;
            let mut undeclared: Vec<u32> = Vec::new();
            for &(id, t, _) in samples {
                let Some(s) = head.series.get(id as usize) else {
                    return Err(Error::InvalidArgument(format!("unknown series ref {id}")));
                };
                let max_t = s.max_t;
                if max_t != i64::MIN && t < max_t.saturating_sub(window) {
                    return Err(Error::Rejected(format!(
                        "sample for {} at {t} is older than the out-of-order window ({window} ms before its newest sample at {max_t}); nothing in this batch was written",
                        head.labels_of(id)
                    )));
                }
                if s.wal_epoch != epoch && undeclared.last() != Some(&id) {
                    undeclared.push(id);
                }
            }
            undeclared.sort_unstable();
            undeclared.dedup();
            new_series = undeclared
                .into_iter()
                .map(|id| (id, head.labels_of(id)))
                .collect();
        }
        let mut payload = Vec::with_capacity(samples.len() * 13 + 64);
        let (count, min_t, max_t) = wal::encode_batch(&mut payload, &new_series, meta, samples);
        let mut framed = Vec::with_capacity(payload.len() + wal::HEADER_LEN + 4);
        wal::frame(&mut framed, wal::REC_BATCH, &payload, count, min_t, max_t);
        self.write_wal(&mut w, &framed, false)?;
        let my_lsn = w.written_lsn;
        {
            let mut st = self.inner.state.write();
            for (id, _) in &new_series {
                st.head.series[*id as usize].wal_epoch = epoch;
            }
            for &(id, t, v) in samples {
                st.head.append(id, t, v);
            }
            for (name, m) in meta {
                st.manifest.set_meta(name.clone(), m.clone());
            }
        }
        let need_flush = {
            let head = &self.inner.state.read().head;
            head.n_samples >= self.inner.opts.flush_samples
                || head.memory_estimate() >= self.inner.opts.flush_bytes
        };
        if need_flush {
            // A flush makes everything durable (blocks, then a new synced segment).
            self.flush_locked(&mut w)?;
            let lsn = w.written_lsn;
            // Lock order: `synced_lsn` is never taken while `writer` is held.
            drop(w);
            let mut synced = self.inner.synced_lsn.lock();
            *synced = (*synced).max(lsn);
            return Ok(CommitInfo {
                samples: samples.len(),
            });
        }
        drop(w);
        if self.inner.opts.sync == SyncPolicy::Batch {
            self.sync_to(my_lsn)?;
        }
        Ok(CommitInfo {
            samples: samples.len(),
        })
    }

    /// Makes records up to `lsn` durable. Runs the fsync without the writer lock, so other
    /// commits keep appending meanwhile; whoever syncs covers everything appended before it
    /// started, and committers that were covered return without a sync of their own.
    fn sync_to(&self, lsn: u64) -> Result<()> {
        let mut synced = self.inner.synced_lsn.lock();
        if *synced >= lsn {
            return Ok(());
        }
        let (target, mut syncer) = {
            let w = self.inner.writer.lock();
            let Some(wal) = w.wal.as_ref() else {
                // The segment was replaced by a flush, which synced everything.
                *synced = w.written_lsn;
                return Ok(());
            };
            (w.written_lsn, wal.syncer()?)
        };
        let res = syncer.sync();
        let mut w = self.inner.writer.lock();
        match res {
            Ok(()) => {
                *synced = target;
                if w.written_lsn == target {
                    if let Some(wal) = w.wal.as_mut() {
                        wal.mark_synced();
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Later records go to a fresh segment; this batch is reported as failed
                // (it stays visible in this process and may or may not survive a crash).
                w.wal_broken = true;
                Err(Error::io("sync", Db::wal_dir(&self.inner.dir), e))
            }
        }
    }

    /// Starts a fresh segment, and with it a new series-id epoch, when there is no segment
    /// (first write since open or since a flush) or the current one failed.
    fn ensure_segment(&self, w: &mut Writer) -> Result<()> {
        if w.wal_broken || w.wal.is_none() {
            // A broken segment's unsynced records may never become durable, and with them
            // the declarations of series that later records would name: the new epoch
            // declares them again. Its metadata is restated for the same reason.
            let meta = if w.wal_broken {
                meta_declarations(&self.inner.state.read())
            } else {
                Vec::new()
            };
            self.start_segment(w, &meta, false)?;
        }
        Ok(())
    }

    /// Creates segment `w.next_seg` beginning with an epoch record (and a batch restating
    /// `meta` when there is any), optionally synced, and makes it the current segment. Every
    /// series must be declared again before a record names it.
    fn start_segment(
        &self,
        w: &mut Writer,
        meta: &[(String, MetricMeta)],
        sync: bool,
    ) -> Result<()> {
        let wal_dir = Db::wal_dir(&self.inner.dir);
        let next = w.next_seg;
        w.next_seg += 1;
        let started = WalWriter::create(
            self.inner.vfs.clone(),
            &wal_dir,
            next,
            self.inner.opts.wal_segment_bytes,
        )
        .and_then(|mut fresh| {
            fresh.append(&wal::epoch_record())?;
            if !meta.is_empty() {
                fresh.append(&declaration_record(&[], meta))?;
            }
            if sync {
                fresh.sync()?;
            }
            Ok(fresh)
        });
        let fresh = match started {
            Ok(f) => f,
            Err(e) => {
                // Whatever the half-made segment holds, the next record goes to another one.
                w.wal_broken = true;
                return Err(e);
            }
        };
        w.epoch += 1;
        w.wal = Some(fresh);
        w.wal_broken = false;
        Ok(())
    }

    fn write_wal(&self, w: &mut Writer, framed: &[u8], sync: bool) -> Result<()> {
        self.ensure_segment(w)?;
        let wal = w.wal.as_mut().expect("created above");
        let res = wal
            .append(framed)
            .and_then(|_| if sync { wal.sync() } else { Ok(()) });
        // The writer rolls to new segments by itself: never hand out a number it used.
        let seq = wal.seq();
        w.next_seg = w.next_seg.max(seq + 1);
        if res.is_ok() {
            w.written_lsn += 1;
        }
        if res.is_err() {
            w.wal_broken = true;
        }
        res
    }

    /// Makes every committed batch durable (whatever the sync policy).
    pub fn sync(&self) -> Result<()> {
        let lsn = self.inner.writer.lock().written_lsn;
        self.sync_to(lsn)
    }

    /// Selects the samples in `[mint, maxt]` of every series matching all `matchers`,
    /// merged over blocks and head, sorted by labels. Series with no sample in the range
    /// are left out.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesData>> {
        self.select_lazy(matchers, mint, maxt)?.into_series_data()
    }

    /// Like [`Db::select`], but decodes nothing yet: the series matching `matchers`, in
    /// label order, each read on demand with [`Selection::read`] into buffers the caller
    /// reuses. A query that evaluates one series at a time this way holds one series'
    /// samples instead of all of them. The selection is a snapshot: later writes,
    /// flushes and compactions do not change what it reads.
    pub fn select_lazy(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selection> {
        let st = self.inner.state.read();
        let blocks: Vec<Arc<LiveBlock>> = st.blocks.clone();
        let tombstones = st.manifest.tombstones.clone();
        // The head's samples are copied now, under the lock; blocks are immutable and
        // stay mapped while the selection holds them.
        let mut head: Vec<(Labels, Run)> = Vec::new();
        for id in st.head.select_ids(matchers) {
            let mut run = Run::default();
            st.head.samples(id, mint, maxt, &mut run.ts, &mut run.vs);
            if !run.ts.is_empty() {
                head.push((st.head.labels_of(id), run));
            }
        }
        drop(st);
        let mut ordered = blocks;
        ordered.sort_by_key(|b| b.seq);
        // (labels) -> sources in precedence order: blocks by sequence, then the head.
        let mut acc: BTreeMap<Labels, Vec<Source>> = BTreeMap::new();
        for lb in &ordered {
            let s = lb.block.stats();
            if s.max_t < mint || s.min_t > maxt {
                continue;
            }
            for bs in lb.block.select(matchers)? {
                let chunks: Vec<ChunkMeta> = bs
                    .chunks
                    .iter()
                    .filter(|m| m.max_t >= mint && m.min_t <= maxt)
                    .copied()
                    .collect();
                if chunks.is_empty() {
                    continue;
                }
                let deleted: Vec<(i64, i64)> = tombstones
                    .iter()
                    .filter(|t| t.seq > lb.seq)
                    .filter(|t| t.matchers.iter().all(|m| m.matches_labels(&bs.labels)))
                    .map(|t| (t.mint, t.maxt))
                    .collect();
                acc.entry(bs.labels).or_default().push(Source::Block {
                    block: lb.clone(),
                    chunks,
                    deleted,
                });
            }
        }
        for (labels, run) in head {
            acc.entry(labels).or_default().push(Source::Head(run));
        }
        Ok(Selection {
            series: acc.into_iter().collect(),
            mint,
            maxt,
        })
    }

    /// Label sets of every series matching `matchers` that has data (any time).
    pub fn series(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        Ok(self
            .select(matchers, i64::MIN, i64::MAX)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }

    /// Every label name, sorted.
    pub fn label_names(&self) -> Result<Vec<String>> {
        let st = self.inner.state.read();
        let mut names: std::collections::BTreeSet<String> =
            st.head.label_names().into_iter().collect();
        for b in &st.blocks {
            names.extend(b.block.label_names()?);
        }
        Ok(names.into_iter().collect())
    }

    /// Every value of a label, sorted.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let st = self.inner.state.read();
        let mut vals: std::collections::BTreeSet<String> =
            st.head.label_values(name).into_iter().collect();
        for b in &st.blocks {
            vals.extend(b.block.label_values(name)?);
        }
        Ok(vals.into_iter().collect())
    }

    /// Metric metadata by metric name. Metrics whose metadata is the default (type unknown,
    /// no unit, no help, health) have no entry.
    pub fn metadata(&self) -> BTreeMap<String, MetricMeta> {
        self.inner.state.read().manifest.meta.clone()
    }

    /// Sets the metadata of a metric (durable like a batch). Setting the default removes the
    /// metric's entry from [`Db::metadata`].
    pub fn set_metadata(&self, metric: &str, meta: MetricMeta) -> Result<()> {
        self.commit(&[], &[(metric.to_string(), meta)]).map(|_| ())
    }

    /// Writes everything in the head to blocks and truncates the WAL.
    pub fn flush(&self) -> Result<()> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let mut w = self.inner.writer.lock();
        self.flush_locked(&mut w)
    }

    fn next_seq(st: &mut State) -> u64 {
        let s = st.manifest.next_seq;
        st.manifest.next_seq += 1;
        s
    }

    fn flush_locked(&self, w: &mut Writer) -> Result<()> {
        // Blocks must never hold data newer than the durable WAL: after a crash between the
        // manifest swap and the removal of the old segments, replay lays the WAL over the
        // blocks (the head wins on equal timestamps), so a record lost there would undo part
        // of a batch whose other samples the blocks keep.
        if let Some(wal) = w.wal.as_mut() {
            if let Err(e) = wal.sync() {
                w.wal_broken = true;
                return Err(e);
            }
        }
        let vfs = &*self.inner.vfs;
        let blocks_dir = Db::blocks_dir(&self.inner.dir);
        let range = self.inner.opts.block_range_ms;
        // Gather the head's data per block range. The writer lock keeps it unchanged.
        let mut by_range: BTreeMap<i64, Vec<(Labels, Vec<EncodedChunk>)>> = BTreeMap::new();
        let meta_list = {
            let st = self.inner.state.read();
            for id in 0..st.head.series.len() as u32 {
                let chunks = st.head.flush_chunks(id);
                if chunks.is_empty() {
                    continue;
                }
                let labels = st.head.labels_of(id);
                let mut cur: Option<(i64, Vec<EncodedChunk>)> = None;
                for c in chunks {
                    let r = c.meta.min_t.div_euclid(range);
                    match &mut cur {
                        Some((cr, v)) if *cr == r => v.push(c),
                        _ => {
                            if let Some((cr, v)) = cur.take() {
                                by_range.entry(cr).or_default().push((labels.clone(), v));
                            }
                            cur = Some((r, vec![c]));
                        }
                    }
                }
                if let Some((cr, v)) = cur {
                    by_range.entry(cr).or_default().push((labels, v));
                }
            }
            meta_declarations(&st)
        };
        let mut new_blocks = Vec::new();
        for (_, mut series) in by_range {
            series.sort_by(|a, b| a.0.cmp(&b.0));
            let seq = Db::next_seq(&mut self.inner.state.write());
            let name = format!("{seq:016x}.blk");
            write_block(vfs, &blocks_dir, &name, &series)?;
            new_blocks.push((seq, name));
        }
        vfs.sync_dir(&blocks_dir)
            .map_err(|e| Error::io("sync", &blocks_dir, e))?;
        let mut opened = Vec::new();
        for (seq, name) in &new_blocks {
            opened.push(Arc::new(LiveBlock {
                seq: *seq,
                block: Arc::new(Block::open(vfs, &blocks_dir, name)?),
            }));
        }
        let mut manifest = self.inner.state.read().manifest.clone();
        manifest.blocks.extend(new_blocks.iter().cloned());
        manifest.store(vfs, &self.inner.dir)?;
        // A new WAL segment starting a new epoch (later records declare the series they
        // name again) and restating the metadata, then the old segments go.
        let wal_dir = Db::wal_dir(&self.inner.dir);
        // Segments up to `old_seq` hold only what the blocks now have.
        let old_seq = w.wal.as_ref().map_or(0, |x| x.seq()).max(w.next_seg - 1);
        w.next_seg = old_seq + 1;
        self.start_segment(w, &meta_list, true)?;
        for name in vfs
            .list(&wal_dir)
            .map_err(|e| Error::io("list", &wal_dir, e))?
        {
            if name.parse::<u64>().is_ok_and(|s| s <= old_seq) {
                let p = wal_dir.join(&name);
                vfs.remove_file(&p)
                    .map_err(|e| Error::io("remove", &p, e))?;
            }
        }
        vfs.sync_dir(&wal_dir)
            .map_err(|e| Error::io("sync", &wal_dir, e))?;
        {
            let mut st = self.inner.state.write();
            st.manifest.blocks = manifest.blocks;
            st.blocks.extend(opened);
            st.head.clear_samples();
        }
        self.compact_locked(false)?;
        self.apply_retention()?;
        Ok(())
    }

    /// Flushes the head, then merges blocks: overlapping blocks, and blocks of the same
    /// day and week into one, applying deletions.
    pub fn compact(&self) -> Result<()> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let mut w = self.inner.writer.lock();
        self.flush_locked(&mut w)?;
        self.compact_locked(true)?;
        self.apply_retention()
    }

    /// Plans and runs compactions. With `force`, ranges still being written are compacted
    /// too.
    fn compact_locked(&self, force: bool) -> Result<()> {
        let levels = [24 * HOUR, 7 * 24 * HOUR];
        for level in levels {
            loop {
                let (group, newest) = {
                    let st = self.inner.state.read();
                    let newest = st
                        .blocks
                        .iter()
                        .map(|b| b.block.stats().max_t)
                        .max()
                        .unwrap_or(i64::MIN);
                    let mut groups: BTreeMap<i64, Vec<Arc<LiveBlock>>> = BTreeMap::new();
                    for b in &st.blocks {
                        let s = b.block.stats();
                        let r = s.min_t.div_euclid(level);
                        if s.max_t.div_euclid(level) == r {
                            groups.entry(r).or_default().push(b.clone());
                        }
                    }
                    let pick = groups.into_iter().find(|(r, g)| {
                        let end = (r + 1) * level;
                        g.len() >= 2 && (force || end <= newest)
                    });
                    (pick.map(|(_, g)| g), newest)
                };
                let _ = newest;
                let Some(group) = group else { break };
                self.merge_blocks(&group, level)?;
            }
        }
        // Drop tombstones that no longer apply to any block.
        let mut st = self.inner.state.write();
        let min_seq = st.blocks.iter().map(|b| b.seq).min().unwrap_or(u64::MAX);
        let before = st.manifest.tombstones.len();
        st.manifest.tombstones.retain(|t| t.seq > min_seq);
        if st.manifest.tombstones.len() != before {
            st.manifest.store(&*self.inner.vfs, &self.inner.dir)?;
        }
        Ok(())
    }

    /// Merges `group` (blocks within one range of `level` ms) into one block. Chunks are
    /// copied as they are, except that neighbouring chunks of a series that fit in one chunk
    /// together (cut only because a block boundary of the flush fell between them) are
    /// joined, and series with overlapping or deleted samples are re-cut, at `level`.
    fn merge_blocks(&self, group: &[Arc<LiveBlock>], level: i64) -> Result<()> {
        let vfs = &*self.inner.vfs;
        let blocks_dir = Db::blocks_dir(&self.inner.dir);
        let tombstones = self.inner.state.read().manifest.tombstones.clone();
        let mut ordered: Vec<&Arc<LiveBlock>> = group.iter().collect();
        ordered.sort_by_key(|b| b.seq);
        let mut per_series: BTreeMap<Labels, Vec<(usize, crate::block::ChunkMeta)>> =
            BTreeMap::new();
        for (i, lb) in ordered.iter().enumerate() {
            for s in lb.block.all_series()? {
                per_series
                    .entry(s.labels)
                    .or_default()
                    .extend(s.chunks.iter().map(|m| (i, *m)));
            }
        }
        let mut out: Vec<(Labels, Vec<EncodedChunk>)> = Vec::with_capacity(per_series.len());
        for (labels, mut chunks) in per_series {
            chunks.sort_by_key(|(i, m)| (m.min_t, *i));
            let overlapping = chunks.windows(2).any(|w| w[1].1.min_t <= w[0].1.max_t);
            let deleted = |i: usize, m: &crate::block::ChunkMeta| {
                tombstones.iter().any(|t| {
                    t.seq > ordered[i].seq
                        && t.mint <= m.max_t
                        && t.maxt >= m.min_t
                        && t.matchers.iter().all(|mm| mm.matches_labels(&labels))
                })
            };
            let touched = chunks.iter().any(|(i, m)| deleted(*i, m));
            if !overlapping && !touched {
                let limit = self.inner.opts.chunk_samples;
                let mut v = Vec::with_capacity(chunks.len());
                let mut k = 0;
                while k < chunks.len() {
                    // The longest run from `k` that fits in one chunk.
                    let mut end = k + 1;
                    let mut n = chunks[k].1.count as usize;
                    while end < chunks.len() && n + chunks[end].1.count as usize <= limit {
                        n += chunks[end].1.count as usize;
                        end += 1;
                    }
                    if end == k + 1 {
                        let (i, m) = &chunks[k];
                        let data = ordered[*i].block.chunk_bytes(m)?;
                        v.push(EncodedChunk {
                            meta: *m,
                            data: Arc::from(data),
                        });
                    } else {
                        let (mut ts, mut vals) = (Vec::with_capacity(n), Vec::with_capacity(n));
                        for (i, m) in &chunks[k..end] {
                            ordered[*i].block.decode_chunk(m, &mut ts, &mut vals)?;
                        }
                        v.push(EncodedChunk::encode(&ts, &vals));
                    }
                    k = end;
                }
                out.push((labels, v));
                continue;
            }
            let mut runs: Vec<Vec<(i64, f64)>> = vec![Vec::new(); ordered.len()];
            for (i, m) in &chunks {
                let (mut ts, mut vals) = (Vec::new(), Vec::new());
                ordered[*i].block.decode_chunk(m, &mut ts, &mut vals)?;
                let mut run: Vec<(i64, f64)> = ts.into_iter().zip(vals).collect();
                for t in tombstones.iter().filter(|t| t.seq > ordered[*i].seq) {
                    if t.matchers.iter().all(|mm| mm.matches_labels(&labels)) {
                        run.retain(|&(x, _)| x < t.mint || x > t.maxt);
                    }
                }
                runs[*i].extend(run);
            }
            let merged = merge_runs(&runs);
            if merged.is_empty() {
                continue;
            }
            let (ts, vals): (Vec<i64>, Vec<f64>) = merged.into_iter().unzip();
            out.push((
                labels,
                cut_chunks(&ts, &vals, self.inner.opts.chunk_samples, level),
            ));
        }
        let seq = Db::next_seq(&mut self.inner.state.write());
        let name = format!("{seq:016x}.blk");
        let mut new_block = None;
        if !out.is_empty() {
            write_block(vfs, &blocks_dir, &name, &out)?;
            vfs.sync_dir(&blocks_dir)
                .map_err(|e| Error::io("sync", &blocks_dir, e))?;
            new_block = Some(Arc::new(LiveBlock {
                seq,
                block: Arc::new(Block::open(vfs, &blocks_dir, &name)?),
            }));
        }
        let gone: std::collections::HashSet<u64> = group.iter().map(|b| b.seq).collect();
        let mut manifest = self.inner.state.read().manifest.clone();
        manifest.blocks.retain(|(s, _)| !gone.contains(s));
        if new_block.is_some() {
            manifest.blocks.push((seq, name));
        }
        manifest.store(vfs, &self.inner.dir)?;
        {
            let mut st = self.inner.state.write();
            st.manifest.blocks = manifest.blocks;
            st.blocks.retain(|b| !gone.contains(&b.seq));
            st.blocks.extend(new_block);
        }
        for b in group {
            let p = b.block.path().to_path_buf();
            vfs.remove_file(&p)
                .map_err(|e| Error::io("remove", &p, e))?;
        }
        Ok(())
    }

    fn apply_retention(&self) -> Result<()> {
        let opts = &self.inner.opts;
        if opts.retention_ms.is_none() && opts.retention_bytes.is_none() {
            return Ok(());
        }
        let drop_list: Vec<Arc<LiveBlock>> = {
            let st = self.inner.state.read();
            let newest = st
                .blocks
                .iter()
                .map(|b| b.block.stats().max_t)
                .max()
                .unwrap_or(i64::MIN)
                .max(st.head.max_t);
            let mut by_age: Vec<Arc<LiveBlock>> = st.blocks.clone();
            by_age.sort_by_key(|b| b.block.stats().min_t);
            let mut drop_list = Vec::new();
            let mut total: u64 = by_age.iter().map(|b| b.block.stats().bytes).sum();
            for b in &by_age {
                let s = b.block.stats();
                let too_old = opts
                    .retention_ms
                    .is_some_and(|r| s.max_t < newest.saturating_sub(r));
                let too_big = opts.retention_bytes.is_some_and(|r| total > r);
                if too_old || too_big {
                    total -= s.bytes;
                    drop_list.push(b.clone());
                }
            }
            drop_list
        };
        if drop_list.is_empty() {
            return Ok(());
        }
        let gone: std::collections::HashSet<u64> = drop_list.iter().map(|b| b.seq).collect();
        let mut manifest = self.inner.state.read().manifest.clone();
        manifest.blocks.retain(|(s, _)| !gone.contains(s));
        manifest.store(&*self.inner.vfs, &self.inner.dir)?;
        {
            let mut st = self.inner.state.write();
            st.manifest.blocks = manifest.blocks;
            st.blocks.retain(|b| !gone.contains(&b.seq));
        }
        for b in drop_list {
            let p = b.block.path().to_path_buf();
            self.inner
                .vfs
                .remove_file(&p)
                .map_err(|e| Error::io("remove", &p, e))?;
        }
        Ok(())
    }

    /// Deletes the samples in `[mint, maxt]` of every series matching `matchers`. Reads
    /// stop seeing them at once; their space is reclaimed at the next compaction.
    pub fn delete(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<()> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly);
        }
        if matchers.is_empty() {
            return Err(Error::InvalidArgument(
                "delete needs at least one matcher".into(),
            ));
        }
        let mut w = self.inner.writer.lock();
        let seq = Db::next_seq(&mut self.inner.state.write());
        let d = Deletion {
            seq,
            matchers: matchers.to_vec(),
            mint,
            maxt,
        };
        let mut payload = Vec::new();
        wal::encode_delete(&mut payload, &d);
        let mut framed = Vec::new();
        wal::frame(&mut framed, wal::REC_DELETE, &payload, 0, mint, maxt);
        self.write_wal(&mut w, &framed, true)?;
        let mut manifest = self.inner.state.read().manifest.clone();
        manifest.tombstones.push(Tombstone {
            seq,
            matchers: matchers.to_vec(),
            mint,
            maxt,
        });
        manifest.store(&*self.inner.vfs, &self.inner.dir)?;
        let mut st = self.inner.state.write();
        st.manifest.tombstones = manifest.tombstones;
        st.head.delete(matchers, mint, maxt);
        Ok(())
    }

    /// A summary for inspection.
    pub fn info(&self) -> DbInfo {
        let st = self.inner.state.read();
        let wal_dir = Db::wal_dir(&self.inner.dir);
        let wal_segments = self
            .inner
            .vfs
            .list(&wal_dir)
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                let len = self.inner.vfs.len(&wal_dir.join(&n)).unwrap_or(0);
                (n, len)
            })
            .collect();
        let mut blocks: Vec<(String, u64, BlockStats)> = st
            .blocks
            .iter()
            .map(|b| (b.block.name.clone(), b.seq, b.block.stats()))
            .collect();
        blocks.sort_by_key(|b| b.2.min_t);
        DbInfo {
            head_series: st.head.series.len(),
            head_samples: st.head.n_samples,
            head_range: (st.head.n_samples > 0).then_some((st.head.min_t, st.head.max_t)),
            blocks,
            wal_segments,
        }
    }

    /// The open blocks, for inspection and analysis.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        let st = self.inner.state.read();
        let mut v: Vec<(u64, Arc<Block>)> =
            st.blocks.iter().map(|b| (b.seq, b.block.clone())).collect();
        v.sort_by_key(|b| b.0);
        v.into_iter().map(|b| b.1).collect()
    }

    /// Verifies every checksum of every block and WAL segment. Returns the problems found
    /// (empty when everything is intact).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for b in self.blocks() {
            problems.extend(
                b.check()
                    .into_iter()
                    .map(|p| format!("{}: {p}", b.path().display())),
            );
        }
        let wal_dir = Db::wal_dir(&self.inner.dir);
        let vfs = &*self.inner.vfs;
        let mut segs = vfs.list(&wal_dir).unwrap_or_default();
        segs.retain(|n| n.parse::<u64>().is_ok());
        let n = segs.len();
        for (i, name) in segs.into_iter().enumerate() {
            let path = wal_dir.join(&name);
            let Ok(data) = vfs.map(&path) else {
                problems.push(format!("{}: cannot read", path.display()));
                continue;
            };
            let mut notices = Vec::new();
            match wal::scan_segment(&path, (*data).as_ref(), &mut notices, |_| Ok(())) {
                Ok(scan) => {
                    // A torn tail of the last segment is what a crash (or a writer in the
                    // middle of a record) leaves; replay truncates it: not damage.
                    if scan.torn_tail && i + 1 < n {
                        notices.push(ReplayNotice {
                            segment: path.clone(),
                            offset: scan.good_len,
                            message: "incomplete or damaged record at the end".into(),
                        });
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
            problems.extend(notices.into_iter().map(|n| {
                format!(
                    "{}: offset {}: {}",
                    n.segment.display(),
                    n.offset,
                    n.message
                )
            }));
        }
        problems
    }

    /// Syncs and closes the database (dropping the last handle does the same, ignoring
    /// errors).
    pub fn close(self) -> Result<()> {
        self.inner.stop.store(true, Ordering::Relaxed);
        if !self.inner.opts.read_only {
            self.sync()?;
        }
        Ok(())
    }
}

/// Every metric's metadata: what a segment starting a new epoch restates, so that it stays
/// in the WAL when earlier segments are gone (the manifest has it too; `repair` may not).
fn meta_declarations(st: &State) -> Vec<(String, MetricMeta)> {
    st.manifest
        .meta
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A framed batch record declaring series and metadata, with no samples.
fn declaration_record(series: &[(u32, Labels)], meta: &[(String, MetricMeta)]) -> Vec<u8> {
    let mut payload = Vec::new();
    let (c, a, b) = wal::encode_batch(&mut payload, series, meta, &[]);
    let mut framed = Vec::new();
    wal::frame(&mut framed, wal::REC_BATCH, &payload, c, a, b);
    framed
}

/// WAL series id -> head series id for one epoch of replay. A process numbers its series
/// densely, so the ids of an epoch are mostly small: they index a vector, which is what a
/// replay of millions of samples looks up per sample. The vector only grows to an id below
/// 4 x (declarations seen) + 1024, so a crafted id (4,000,000,000) allocates nothing: ids
/// above the bound go to a map.
#[derive(Default)]
struct EpochIds {
    dense: Vec<u32>,
    sparse: HashMap<u32, u32>,
    declared: usize,
}

impl EpochIds {
    const NONE: u32 = u32::MAX;

    fn clear(&mut self) {
        self.dense.clear();
        self.sparse.clear();
        self.declared = 0;
    }

    #[inline]
    fn get(&self, id: u32) -> Option<u32> {
        match self.dense.get(id as usize) {
            Some(&h) if h != Self::NONE => Some(h),
            _ if self.sparse.is_empty() => None,
            _ => self.sparse.get(&id).copied(),
        }
    }

    /// Maps `id` to `hid` unless it is mapped already; returns what `id` maps to.
    fn insert(&mut self, id: u32, hid: u32) -> u32 {
        self.declared += 1;
        if let Some(&h) = self.sparse.get(&id) {
            return h;
        }
        let i = id as usize;
        if i >= self.dense.len() {
            if i >= 4 * self.declared + 1024 {
                return *self.sparse.entry(id).or_insert(hid);
            }
            self.dense.resize(i + 1, Self::NONE);
        }
        if self.dense[i] == Self::NONE {
            self.dense[i] = hid;
        }
        self.dense[i]
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut w = self.writer.lock();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(wal) = w.wal.as_mut() {
            let _ = wal.sync();
        }
    }
}

/// Buffers samples and commits them as one atomic batch.
pub struct Appender<'a> {
    db: &'a Db,
    samples: Vec<(u32, i64, f64)>,
    meta: Vec<(String, MetricMeta)>,
}

impl Appender<'_> {
    /// The ref of a series (created if new).
    pub fn series_ref(&self, labels: &Labels) -> Result<SeriesRef> {
        self.db.series_ref(labels)
    }

    /// Adds a sample of a series.
    #[inline]
    pub fn add(&mut self, series: SeriesRef, t: i64, v: f64) {
        self.samples.push((series.0, t, v));
    }

    /// Adds a sample, looking the series up by labels.
    pub fn add_labels(&mut self, labels: &Labels, t: i64, v: f64) -> Result<()> {
        let r = self.db.series_ref(labels)?;
        self.add(r, t, v);
        Ok(())
    }

    /// Sets metric metadata as part of this batch.
    pub fn set_metadata(&mut self, metric: &str, meta: MetricMeta) {
        self.meta.push((metric.to_string(), meta));
    }

    /// Samples buffered.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.meta.is_empty()
    }

    /// Writes the batch, all of it or none of it: no reader ever sees part of a batch.
    /// With the default sync policy the batch is durable when this returns `Ok`.
    ///
    /// On an error the batch is not acknowledged, and what became of it depends on where
    /// the error struck. If it was rejected or its WAL write failed, it was not applied:
    /// no reader sees it and no crash brings it back. If its WAL write succeeded and only
    /// the sync failed (group commit applies a batch to the head before the fsync that
    /// covers it), the batch is visible to this process's readers, whole, and may or may
    /// not survive a crash. Either way the batches acknowledged before are unaffected.
    pub fn commit(&mut self) -> Result<CommitInfo> {
        let res = self.db.commit(&self.samples, &self.meta);
        self.samples.clear();
        self.meta.clear();
        res
    }

    /// Drops the buffered samples.
    pub fn rollback(&mut self) {
        self.samples.clear();
        self.meta.clear();
    }
}

/// A map from labels to refs for callers that see the same series many times (ingest).
#[derive(Default)]
pub struct RefCache {
    map: HashMap<Labels, SeriesRef>,
}

impl RefCache {
    /// The ref for `labels`, from the cache or the database.
    pub fn get(&mut self, db: &Db, labels: &Labels) -> Result<SeriesRef> {
        if let Some(r) = self.map.get(labels) {
            return Ok(*r);
        }
        let r = db.series_ref(labels)?;
        self.map.insert(labels.clone(), r);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::EpochIds;

    #[test]
    fn epoch_ids_dense_sparse_and_bounded() {
        let mut ids = EpochIds::default();
        assert_eq!(ids.insert(3, 30), 30);
        assert_eq!(ids.insert(3, 31), 30, "an id keeps its first mapping");
        // Far above the bound: a map entry, no vector of four billion slots.
        assert_eq!(ids.insert(4_000_000_000, 7), 7);
        assert!(ids.dense.len() <= 4 * 2 + 1024);
        assert_eq!(ids.get(4_000_000_000), Some(7));
        assert_eq!(ids.get(3), Some(30));
        assert_eq!(ids.get(2), None);
        assert_eq!(ids.get(5_000), None);
        // An id first mapped sparsely stays mapped there when the vector grows past it.
        let mut ids = EpochIds::default();
        assert_eq!(ids.insert(2_000, 1), 1);
        for i in 0..1_000 {
            ids.insert(i, 100 + i);
        }
        assert_eq!(ids.insert(2_500, 2), 2);
        assert!(ids.dense.len() > 2_000);
        assert_eq!(ids.insert(2_000, 9), 1);
        assert_eq!(ids.get(2_000), Some(1));
        assert_eq!(ids.get(999), Some(1099));
        ids.clear();
        assert_eq!(ids.get(999), None);
        assert_eq!(ids.get(2_000), None);
    }
}
