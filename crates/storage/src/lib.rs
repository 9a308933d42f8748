//! tsq-storage: the storage engine of tsq.
//!
//! Series (metric name + labels) map to samples `(i64 ms, f64)`. Writes go to a write-ahead
//! log, then to an in-memory head; the head is flushed to immutable, columnar, compressed
//! blocks; reads merge blocks and head.

pub mod codec;
mod error;
pub mod labels;

pub use error::{Error, Result};
pub use labels::{
    is_stale_nan, Label, Labels, MatchOp, Matcher, MetricKind, MetricMeta, MetricType, SeriesData,
    METRIC_NAME, STALE_NAN_BITS,
};
