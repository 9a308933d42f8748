//! tsq-storage: the storage engine of tsq.
//!
//! Series (metric name + labels) map to samples `(i64 ms, f64)`. Writes go to a write-ahead
//! log, then to an in-memory head; the head is flushed to immutable, columnar, compressed
//! blocks; reads merge blocks and head. See docs/ARCHITECTURE.md and docs/format/.
//!
//! ```
//! use tsq_storage::{Db, Labels, Matcher};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path()).unwrap();
//! let mut app = db.appender();
//! let up = app.series_ref(&Labels::new([("__name__", "up"), ("job", "api")])).unwrap();
//! app.add(up, 1_000, 1.0);
//! app.add(up, 16_000, 0.0);
//! app.commit().unwrap(); // durable when this returns
//! let got = db.select(&[Matcher::equal("job", "api")], 0, 20_000).unwrap();
//! assert_eq!(got[0].timestamps, vec![1_000, 16_000]);
//! ```

pub mod block;
pub mod codec;
mod db;
pub mod enc;
mod error;
mod head;
pub mod index;
pub mod labels;
pub mod manifest;
pub mod repair;
pub mod vfs;
pub mod wal;

pub use db::{
    Appender, Builder, CommitInfo, Db, DbInfo, Options, RefCache, Selection, SeriesRef, SyncPolicy,
};
pub use error::{Error, Result};
pub use labels::{
    is_stale_nan, Label, Labels, MatchOp, Matcher, MetricKind, MetricMeta, MetricType, SeriesData,
    METRIC_NAME, STALE_NAN_BITS,
};
pub use vfs::{FaultKind, MemVfs, OsVfs, Vfs};
