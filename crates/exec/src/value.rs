//! Query results.

use tsq_storage::Labels;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series labels.
    pub labels: Labels,
    /// Timestamp in milliseconds (the evaluation time).
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// One series of a range vector (matrix).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series labels.
    pub labels: Labels,
    /// `(timestamp ms, value)` in time order.
    pub samples: Vec<(i64, f64)>,
}

/// The value of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at time `t`.
    Scalar {
        /// Evaluation time, ms.
        t: i64,
        /// The value.
        v: f64,
    },
    /// A string at time `t`.
    String {
        /// Evaluation time, ms.
        t: i64,
        /// The string.
        s: String,
    },
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector, or the result of a range query (sorted by labels).
    Matrix(Vec<Series>),
    /// Episodes (tsq's pattern extension), sorted by labels then start.
    Episodes(Vec<Episode>),
}

/// A time range during which something held, for one label set: the value of `episodes`,
/// `held_for`, `pattern`, `sequence`, `alert_episodes`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// The label set (never `__name__`).
    pub labels: Labels,
    /// First step at which it held (ms).
    pub start: i64,
    /// End, exclusive (ms): the step after the last one at which it held, or the evaluation
    /// time when `ongoing`.
    pub end: i64,
    /// Still holding at the evaluation time.
    pub ongoing: bool,
    /// Already holding at the first step looked at: it may have begun earlier.
    pub truncated_start: bool,
    /// Named numbers (timestamps and durations in seconds, like PromQL's), in a fixed order
    /// per function.
    pub measures: Vec<(String, f64)>,
}

impl Episode {
    /// `end - start`, ms.
    pub fn duration_ms(&self) -> i64 {
        self.end - self.start
    }

    /// The flags that are set, by name: `ongoing`, `truncated_start`.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.ongoing {
            f.push("ongoing");
        }
        if self.truncated_start {
            f.push("truncated_start");
        }
        f
    }

    /// The measure called `name`.
    pub fn measure(&self, name: &str) -> Option<f64> {
        self.measures.iter().find(|(n, _)| n == name).map(|m| m.1)
    }
}

impl Value {
    /// The Prometheus name of the value's type ("scalar", "string", "vector", "matrix"), or
    /// "episodes".
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::Episodes(_) => "episodes",
        }
    }
}

/// A query's value with the annotations Prometheus would attach to it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// "PromQL warning: ..." annotations.
    pub warnings: Vec<String>,
    /// "PromQL info: ..." annotations.
    pub infos: Vec<String>,
}
