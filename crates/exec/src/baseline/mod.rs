//! Baselines: what is normal, fast (docs/baselines.md).
//!
//! * `median_over_time`, `mad_over_time(v, scaled)`, `iqr_over_time`, `band_over_time`,
//!   `zscore`, `zscore_over_time`, the `outliers_mad` aggregation, time-zone arguments of the
//!   calendar functions and `local_offset`;
//! * the `seasons(period, n, ...)` range modifier, pooled or by season, for every range
//!   function;
//! * rolling evaluation: windows slide incrementally over each series' samples, with order
//!   statistics in sorted blocks (`order.rs`) and compensated moments (`moments.rs`), driven by
//!   the window geometry of `windows.rs`; nothing recomputes a whole window per step.
//!
//! The naive recomputation is kept ([`with_naive_windows`]) as the oracle of the property
//! tests and the baseline of `benches/baseline.rs`.

mod moments;
mod order;
mod query;
mod stats;
mod tz;
mod windows;

pub(crate) use moments::Moments;
pub use query::with_naive_windows;
pub(crate) use query::{call, has_seasons, outliers_mad, seasonal_matrix};
pub(crate) use windows::{slide, WindowAcc};

/// True when this module evaluates the function `name` (beyond the main function table).
pub(crate) fn is_known(name: &str) -> bool {
    query::FUNCTIONS.contains(&name)
}
