//! The storage error type.

use std::path::PathBuf;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error, with the file it concerns.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "sync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checksum did not match: the bytes on disk are damaged.
    #[error("{path}: checksum mismatch at offset {offset} ({what}): expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch {
        /// The damaged file.
        path: PathBuf,
        /// Offset of the checked region.
        offset: u64,
        /// What the checksum covers.
        what: String,
        /// Stored checksum.
        expected: u32,
        /// Computed checksum.
        got: u32,
    },
    /// A structure on disk is malformed.
    #[error("{path}: corrupted at offset {offset}: {reason}")]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// Where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file was written by a newer (or unknown) format version.
    #[error("{path}: unsupported format version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// Another process holds the write lock.
    #[error("database {path} is locked by another writer ({holder})")]
    Locked {
        /// The database directory.
        path: PathBuf,
        /// What is known about the holder (its pid).
        holder: String,
    },
    /// A sample was refused (too old for the out-of-order window, invalid labels, ...).
    #[error("sample rejected: {0}")]
    Rejected(String),
    /// A bad argument from the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The database was opened read-only.
    #[error("database is read-only")]
    ReadOnly,
    /// A limit was hit.
    #[error("limit exceeded: {0}")]
    Limit(String),
}

/// The storage result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupted(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupted {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
