//! tsq-exec: evaluates tsq queries (PromQL plus extensions) over a storage read API.

#![forbid(unsafe_code)]

pub use tsq_parser as parser;
pub use tsq_storage as storage;
