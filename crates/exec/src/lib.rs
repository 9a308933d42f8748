//! tsq-exec: evaluates tsq queries (PromQL plus extensions) over a storage read API.
//!
//! The engine evaluates the syntax tree of `tsq-parser` with Prometheus's semantics: the
//! `promql3` profile follows current Prometheus (3.x), `prometheus-2.42` the Prometheus that
//! Debian packages. See `docs/promql-compat.md` for what is supported and the known gaps.
//!
//! Range queries are evaluated per node over all steps at once: each selector loads its series
//! once over the whole query range, and range functions slide their windows per series over
//! the decoded buffers instead of re-selecting per step.

// The one exception, `funcs::avx`, calls kernels compiled for AVX after checking the CPU.
#![deny(unsafe_code)]

pub use tsq_parser as parser;
pub use tsq_storage as storage;

pub mod alert;
pub mod baseline;
mod db;
mod episodes;
mod eval;
mod funcs;
mod mem;
pub mod promqltest;
mod value;

use std::str::FromStr;

pub use eval::SharedSubexpressions;
pub use mem::MemStorage;
pub use value::{Episode, QueryResult, Sample, Series, Value};

use tsq_parser::Expr;

/// Which Prometheus the engine imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// Current Prometheus (3.x): left-open windows, `.` matches newline in regexes,
    /// `double_exponential_smoothing`, delayed `__name__` removal, annotations.
    #[default]
    Promql3,
    /// Prometheus 2.42: closed windows `[t-d, t]`, 2.42's rate extrapolation, `.` does not
    /// match newline, `holt_winters`, no info/warn annotations.
    Prometheus242,
}

impl Profile {
    /// The spelling used on the command line and in test scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Promql3 => "promql3",
            Profile::Prometheus242 => "prometheus-2.42",
        }
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim() {
            "promql3" | "prometheus-3" | "3" => Ok(Profile::Promql3),
            "prometheus-2.42" | "2.42" | "prometheus242" => Ok(Profile::Prometheus242),
            other => Err(format!(
                "unknown profile {other:?} (expected \"promql3\" or \"prometheus-2.42\")"
            )),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// The semantics to imitate.
    pub profile: Profile,
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// The step of a subquery written without one (Prometheus: the evaluation interval, 1m).
    pub default_subquery_step_ms: i64,
    /// Most samples a query may load from storage; more gives [`Error::Limit`].
    pub max_samples: usize,
    /// Most series one selector may load; more gives [`Error::Limit`].
    pub max_series: usize,
    /// Worker threads used for per-series work on large inputs (1 = none).
    pub threads: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            profile: Profile::Promql3,
            lookback_delta_ms: 300_000,
            default_subquery_step_ms: 60_000,
            max_samples: 50_000_000,
            max_series: 1_000_000,
            threads: 2,
        }
    }
}

/// The read side of a database, as the engine needs it.
pub trait Queryable: Sync {
    /// Every series matching all `matchers`, with its samples `mint_ms <= t <= maxt_ms`
    /// (series without samples in the range may be left out).
    fn select(
        &self,
        matchers: &[tsq_storage::Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> tsq_storage::Result<Vec<tsq_storage::SeriesData>>;

    /// The same series as [`Queryable::select`], read one at a time on demand: range
    /// functions over a selector evaluate series by series into reused buffers instead
    /// of holding every series' samples at once. The default reads from `select`'s
    /// result; a store that can decode lazily (the real database) overrides it.
    fn select_lazy(
        &self,
        matchers: &[tsq_storage::Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> tsq_storage::Result<Box<dyn SeriesSet + '_>> {
        Ok(Box::new(self.select(matchers, mint_ms, maxt_ms)?))
    }
}

/// Selected series, read one at a time (see [`Queryable::select_lazy`]).
pub trait SeriesSet: Send + Sync {
    /// Number of series, in label order.
    fn len(&self) -> usize;

    /// True when there is no series.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Labels of series `i`.
    fn labels(&self, i: usize) -> &tsq_storage::Labels;

    /// An upper bound of series `i`'s samples (what deciding on threads needs).
    fn samples_hint(&self, i: usize) -> usize;

    /// Replaces the contents of `ts` and `vs` with series `i`'s samples, reusing their
    /// capacity; they may come back empty.
    fn read(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> tsq_storage::Result<()>;

    /// Like [`SeriesSet::read`], but may give only a suffix that holds the last sample
    /// (what an instant selector at one time needs). The default reads everything.
    fn read_last(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> tsq_storage::Result<()> {
        self.read(i, ts, vs)
    }

    /// Like [`SeriesSet::read`], but chunks that `summarise` accepts may be left undecoded
    /// and described by their statistics in `summaries` instead (see
    /// `tsq_storage::Selection::read_summarised` for which chunks qualify). The default
    /// decodes everything.
    fn read_summarised(
        &self,
        i: usize,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
        summaries: &mut Vec<tsq_storage::block::ChunkMeta>,
        summarise: &dyn Fn(&tsq_storage::block::ChunkMeta) -> bool,
    ) -> tsq_storage::Result<()> {
        let _ = summarise;
        summaries.clear();
        self.read(i, ts, vs)
    }
}

impl SeriesSet for Vec<tsq_storage::SeriesData> {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn labels(&self, i: usize) -> &tsq_storage::Labels {
        &self[i].labels
    }

    fn samples_hint(&self, i: usize) -> usize {
        self[i].timestamps.len()
    }

    fn read(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> tsq_storage::Result<()> {
        copy_samples(ts, vs, &self[i].timestamps, &self[i].values);
        Ok(())
    }
}

/// Replaces the contents of `ts` and `vs` with copies of `t` and `v`, keeping their
/// capacity (what an in-memory [`SeriesSet`] read does).
pub(crate) fn copy_samples(ts: &mut Vec<i64>, vs: &mut Vec<f64>, t: &[i64], v: &[f64]) {
    ts.clear();
    vs.clear();
    ts.extend_from_slice(t);
    vs.extend_from_slice(v);
}

/// Everything that can go wrong while running a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The query text does not parse or does not type-check.
    #[error("parse error: {0}")]
    Parse(#[from] tsq_parser::ParseError),
    /// The storage failed.
    #[error("storage error: {0}")]
    Storage(#[from] tsq_storage::Error),
    /// Evaluation failed (Prometheus's wording, e.g. "many-to-many matching not allowed").
    #[error("{0}")]
    Eval(String),
    /// A resource limit was hit.
    #[error("{0}")]
    Limit(String),
    /// The query needs something tsq does not support (native histograms, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An internal invariant was broken: this is a bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The query engine. Cheap to create; holds only its options.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with these options.
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses and evaluates `query` at `time_ms`.
    pub fn instant_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryResult> {
        let expr = tsq_parser::parse(query)?;
        self.instant_query_expr(db, &expr, time_ms)
    }

    /// Evaluates a parsed expression at `time_ms`.
    pub fn instant_query_expr(
        &self,
        db: &dyn Queryable,
        expr: &Expr,
        time_ms: i64,
    ) -> Result<QueryResult> {
        let r = eval::Range {
            start: time_ms,
            end: time_ms,
            step: 0,
        };
        eval::run(&self.opts, db, expr, r, true, None)
    }

    /// Parses and evaluates `query` at `start_ms, start_ms + step_ms, ... <= end_ms`.
    pub fn range_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult> {
        let expr = tsq_parser::parse(query)?;
        self.range_query_expr(db, &expr, start_ms, end_ms, step_ms)
    }

    /// Evaluates a parsed expression as a range query. The result is always a matrix.
    pub fn range_query_expr(
        &self,
        db: &dyn Queryable,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult> {
        self.range_query_shared(db, expr, start_ms, end_ms, step_ms, None)
    }

    /// [`Engine::range_query_expr`] that takes the subexpressions `shared` keeps from its
    /// cache, or evaluates them and leaves them there for the next query.
    pub fn range_query_shared(
        &self,
        db: &dyn Queryable,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        shared: Option<&SharedSubexpressions>,
    ) -> Result<QueryResult> {
        if step_ms <= 0 {
            return Err(Error::Eval(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(Error::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        if (end_ms - start_ms) / step_ms > 11_000 {
            return Err(Error::Eval(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let r = eval::Range {
            start: start_ms,
            end: end_ms,
            step: step_ms,
        };
        eval::run(&self.opts, db, expr, r, false, shared)
    }
}

/// True when the engine can evaluate the function `name` (the parser's signature table may
/// know more names, e.g. extensions not evaluated yet).
pub fn supports_function(name: &str) -> bool {
    funcs::is_known(name) || baseline::is_known(name) || episodes::FUNCTIONS.contains(&name)
}
