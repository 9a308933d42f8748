//! tsq-formats: ingestion and export formats, and the benchmark datasets.

#![forbid(unsafe_code)]
