//! The function signature table: one row per function, PromQL's and tsq's.
//!
//! Every function the parser accepts is described here, and only here: name, argument types,
//! how many arguments are required, whether the last one repeats, the return type and the
//! tsq-specific rules (pooled seasonal ranges, subquery-only arguments, trailing clauses).

use crate::ast::ValueType;
use crate::ast::ValueType::{Episodes as E, InstantVector as V, RangeVector as R, Scalar as S};

const STR: ValueType = ValueType::String;

/// A clause that may follow the closing parenthesis of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trailing {
    /// Nothing may follow.
    None,
    /// `on(...)` or `ignoring(...)` (two-input functions such as `zscore`, `followed_by`);
    /// stored in [`crate::Call::matching`] as `(on, labels)`.
    Matching,
    /// `by (...)` (episode summaries such as `count_episodes`); stored in
    /// [`crate::Call::matching`] as `(true, labels)`.
    By,
}

/// The signature of one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSig {
    /// The name as written in queries.
    pub name: &'static str,
    /// The parameter types, optional ones included. When `variadic` is set, the last type
    /// repeats without bound.
    pub args: &'static [ValueType],
    /// How many leading arguments are required.
    pub required: usize,
    /// The last parameter may be repeated any number of times (including zero when
    /// `required < args.len()`).
    pub variadic: bool,
    /// Optional parameters (by index) that may be left out even when a later one is given:
    /// an argument whose type does not fit such a parameter moves on to the next one
    /// (`zscore(v, ref[1h], "mad")` skips the spread window).
    pub skippable: &'static [usize],
    /// The type of the result.
    pub ret: ValueType,
    /// Argument indexes that accept a pooled `seasons(...)` range (without `"by_season"`):
    /// the order-insensitive statistics. Anywhere else a pooled range is a type error.
    pub pooled_seasons: &'static [usize],
    /// The first argument must be a subquery (`expr[range:step]`): the function replays steps.
    pub subquery_arg: bool,
    /// What may follow the call.
    pub trailing: Trailing,
    /// A tsq extension rather than a Prometheus function.
    pub extension: bool,
}

const fn f(name: &'static str, args: &'static [ValueType], ret: ValueType) -> FunctionSig {
    FunctionSig {
        name,
        args,
        required: args.len(),
        variadic: false,
        skippable: &[],
        ret,
        pooled_seasons: &[],
        subquery_arg: false,
        trailing: Trailing::None,
        extension: false,
    }
}

impl FunctionSig {
    const fn opt(mut self, required: usize) -> Self {
        self.required = required;
        self
    }
    const fn var(mut self) -> Self {
        self.variadic = true;
        self.required = self.args.len() - 1;
        self
    }
    const fn pooled(mut self, idx: &'static [usize]) -> Self {
        self.pooled_seasons = idx;
        self
    }
    const fn ext(mut self) -> Self {
        self.extension = true;
        self
    }
    const fn sub(mut self) -> Self {
        self.subquery_arg = true;
        self
    }
    const fn trailing(mut self, t: Trailing) -> Self {
        self.trailing = t;
        self
    }
    const fn skip(mut self, idx: &'static [usize]) -> Self {
        self.skippable = idx;
        self
    }

    /// The largest number of arguments accepted, `None` when unbounded.
    pub fn max_args(&self) -> Option<usize> {
        if self.variadic {
            None
        } else {
            Some(self.args.len())
        }
    }
}

/// Calendar functions: `hour()`, `hour(v)`, `hour(v, "Europe/Paris")`.
const CAL: &[ValueType] = &[V, STR];

static FUNCTIONS: &[FunctionSig] = &[
    // Math on instant vectors.
    f("abs", &[V], V),
    f("ceil", &[V], V),
    f("floor", &[V], V),
    f("exp", &[V], V),
    f("ln", &[V], V),
    f("log2", &[V], V),
    f("log10", &[V], V),
    f("sqrt", &[V], V),
    f("sgn", &[V], V),
    f("round", &[V, S], V).opt(1),
    f("clamp", &[V, S, S], V),
    f("clamp_min", &[V, S], V),
    f("clamp_max", &[V, S], V),
    f("acos", &[V], V),
    f("acosh", &[V], V),
    f("asin", &[V], V),
    f("asinh", &[V], V),
    f("atan", &[V], V),
    f("atanh", &[V], V),
    f("cos", &[V], V),
    f("cosh", &[V], V),
    f("sin", &[V], V),
    f("sinh", &[V], V),
    f("tan", &[V], V),
    f("tanh", &[V], V),
    f("deg", &[V], V),
    f("rad", &[V], V),
    f("pi", &[], S),
    // Counters and gauges over ranges.
    f("rate", &[R], V),
    f("irate", &[R], V),
    f("increase", &[R], V),
    f("delta", &[R], V),
    f("idelta", &[R], V),
    f("resets", &[R], V),
    f("changes", &[R], V),
    f("deriv", &[R], V),
    f("predict_linear", &[R, S], V),
    f("holt_winters", &[R, S, S], V),
    f("double_exponential_smoothing", &[R, S, S], V),
    // *_over_time.
    f("avg_over_time", &[R], V).pooled(&[0]),
    f("sum_over_time", &[R], V).pooled(&[0]),
    f("min_over_time", &[R], V).pooled(&[0]),
    f("max_over_time", &[R], V).pooled(&[0]),
    f("count_over_time", &[R], V).pooled(&[0]),
    f("quantile_over_time", &[S, R], V).pooled(&[1]),
    f("stddev_over_time", &[R], V).pooled(&[0]),
    f("stdvar_over_time", &[R], V).pooled(&[0]),
    f("last_over_time", &[R], V),
    f("first_over_time", &[R], V),
    f("present_over_time", &[R], V).pooled(&[0]),
    f("absent_over_time", &[R], V),
    f("mad_over_time", &[R, S], V).opt(1).pooled(&[0]),
    f("ts_of_min_over_time", &[R], V),
    f("ts_of_max_over_time", &[R], V),
    f("ts_of_first_over_time", &[R], V),
    f("ts_of_last_over_time", &[R], V),
    // Histograms (classic buckets for histogram_quantile; native ones parse only).
    f("histogram_quantile", &[S, V], V),
    // Experimental in Prometheus 3.x: histogram_quantiles(v, q1, q2, ...).
    f("histogram_quantiles", &[V, S], V).var().opt(2),
    f("histogram_avg", &[V], V),
    f("histogram_count", &[V], V),
    f("histogram_sum", &[V], V),
    f("histogram_stddev", &[V], V),
    f("histogram_stdvar", &[V], V),
    f("histogram_fraction", &[S, S, V], V),
    // Labels, sorting, conversion.
    f("label_replace", &[V, STR, STR, STR, STR], V),
    f("label_join", &[V, STR, STR, STR], V).var(),
    f("sort", &[V], V),
    f("sort_desc", &[V], V),
    f("sort_by_label", &[V, STR], V).var(),
    f("sort_by_label_desc", &[V, STR], V).var(),
    f("absent", &[V], V),
    f("scalar", &[V], S),
    f("vector", &[S], V),
    f("time", &[], S),
    f("timestamp", &[V], V),
    f("info", &[V, V], V).opt(1),
    // Calendar (tsq: optional trailing time zone).
    f("minute", CAL, V).opt(0),
    f("hour", CAL, V).opt(0),
    f("day_of_week", CAL, V).opt(0),
    f("day_of_month", CAL, V).opt(0),
    f("day_of_year", CAL, V).opt(0),
    f("days_in_month", CAL, V).opt(0),
    f("month", CAL, V).opt(0),
    f("year", CAL, V).opt(0),
    f("local_offset", &[STR], V).ext(),
    // tsq baselines.
    f("median_over_time", &[R], V).pooled(&[0]).ext(),
    f("iqr_over_time", &[R], V).pooled(&[0]).ext(),
    f("band_over_time", &[R, S, STR, STR], V)
        .opt(2)
        .pooled(&[0])
        .ext(),
    f("zscore", &[V, R, R, STR, S], V)
        .opt(2)
        .skip(&[2])
        .pooled(&[1, 2])
        .trailing(Trailing::Matching)
        .ext(),
    f("zscore_over_time", &[R, STR], V).opt(1).ext(),
    // tsq episodes.
    f("episodes", &[R, S, S], E).opt(1).sub().ext(),
    f("held_for", &[R, S], E).sub().ext(),
    f("followed_by", &[E, E, S], E)
        .trailing(Trailing::Matching)
        .ext(),
    f("episodes_to_series", &[E], V).ext(),
    f("count_episodes", &[E], V).trailing(Trailing::By).ext(),
    f("sum_duration", &[E], V).trailing(Trailing::By).ext(),
    f("max_duration", &[E], V).trailing(Trailing::By).ext(),
    // tsq alert replay.
    f("alert_state", &[R, S, S], V).opt(2).sub().ext(),
    f("alert_episodes", &[R, S, S], E).opt(2).sub().ext(),
];

/// Every function the parser knows, in table order.
pub fn functions() -> &'static [FunctionSig] {
    FUNCTIONS
}

/// The signature of the function called `name`, if there is one.
pub fn lookup_function(name: &str) -> Option<&'static FunctionSig> {
    static BY_NAME: std::sync::OnceLock<Vec<&'static FunctionSig>> = std::sync::OnceLock::new();
    let sorted = BY_NAME.get_or_init(|| {
        let mut v: Vec<&'static FunctionSig> = FUNCTIONS.iter().collect();
        v.sort_by_key(|f| f.name);
        v
    });
    sorted
        .binary_search_by(|f| f.name.cmp(name))
        .ok()
        .map(|i| sorted[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_required_fits() {
        for (i, a) in FUNCTIONS.iter().enumerate() {
            assert!(a.required <= a.args.len(), "{}", a.name);
            for b in &FUNCTIONS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
            for &p in a.pooled_seasons {
                assert_eq!(a.args[p], ValueType::RangeVector, "{}", a.name);
            }
        }
        assert_eq!(
            lookup_function("rate").unwrap().args,
            &[ValueType::RangeVector]
        );
        assert!(lookup_function("nope").is_none());
    }
}
