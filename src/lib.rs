//! tsq: an embedded metrics storage and query engine ("SQLite for workload metrics").

pub use tsq_exec as exec;
pub use tsq_formats as formats;
pub use tsq_parser as parser;
pub use tsq_storage as storage;
