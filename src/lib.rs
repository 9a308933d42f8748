//! tsq: an embedded metrics storage and query engine ("SQLite for workload metrics").
//!
//! Embedders depend on this crate alone. It re-exports the engine's crates:
//!
//! ```text
//!   your service ──► tsq::storage::Db ── Appender::commit ──► WAL ──► head ──► blocks
//!        │                    ▲                                                 │
//!        └──► tsq::exec::Engine (PromQL) ── Queryable::select ◄── merge ◄───────┘
//!                    ▲
//!             tsq::parser (text -> typed AST)        tsq::formats (OpenMetrics, Influx, CSV,
//!                                                    benchmark datasets)
//! ```
//!
//! ```
//! use tsq::exec::{Engine, Value};
//! use tsq::storage::{Db, Labels};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path()).unwrap();
//! let mut app = db.appender();
//! let s = app
//!     .series_ref(&Labels::new([("__name__", "requests_total"), ("route", "/api")]))
//!     .unwrap();
//! for i in 0..10 {
//!     app.add(s, i * 15_000, (i * 30) as f64); // 2 requests per second
//! }
//! app.commit().unwrap(); // one atomic batch, durable when this returns
//!
//! let res = Engine::default()
//!     .instant_query(&db, "rate(requests_total[1m])", 135_000)
//!     .unwrap();
//! let Value::Vector(v) = res.value else { panic!("a vector") };
//! assert!((v[0].v - 2.0).abs() < 1e-9, "{}", v[0].v);
//! ```
//!
//! See docs/ARCHITECTURE.md for the design and docs/format/ for every byte on disk.

pub use tsq_exec as exec;
pub use tsq_formats as formats;
pub use tsq_parser as parser;
pub use tsq_storage as storage;
