//! Errors of the storage layer.
//!
//! Anything read from disk can be wrong (a corrupt value, a key written by a
//! buggy build, a database from a newer release), so every such case is a
//! `StorageError` variant rather than a panic.

use std::path::PathBuf;

/// Everything that can go wrong opening, reading or writing the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Another process (or another handle in this one) holds RocksDB's LOCK file.
    #[error("the database at {} is in use by another process", path.display())]
    Locked {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },

    /// The stored schema version is higher than this build understands.
    #[error(
        "this database was written by a newer Feathur (schema {found}); \
         this build supports up to {supported}"
    )]
    NewerSchema { found: u64, supported: u64 },

    /// Read-only open of a directory that holds no database.
    #[error("there is no database at {}", path.display())]
    Missing { path: PathBuf },

    /// A catalog table is absent (only possible in read-only mode, where
    /// nothing is created).
    #[error("table `{0}` is missing from the database")]
    MissingTable(&'static str),

    /// A write was attempted through a read-only handle.
    #[error("the database is open read-only")]
    ReadOnly,

    /// A stored key does not decode as the table's key type.
    #[error("corrupt key in table `{table}`: {source}")]
    CorruptKey {
        table: &'static str,
        #[source]
        source: CodecError,
    },

    /// A stored value does not decode as the table's value type.
    #[error("corrupt value in table `{table}`: {source}")]
    CorruptValue {
        table: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A value could not be serialised (e.g. a map with non-string keys).
    #[error("cannot encode value for table `{table}`: {source}")]
    Encode {
        table: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The group-commit thread is gone (it panicked or was shut down).
    #[error("the database writer has stopped")]
    WriterGone,

    /// A WAL sync failed earlier: writes are refused until a restart.
    #[error("the database refuses writes after a failed sync; restart the server")]
    WriterPoisoned,

    #[error("database error: {0}")]
    Rocks(#[from] rocksdb::Error),

    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a byte string is not a valid encoding of a key type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("expected {expected} bytes, found {found}")]
    WrongLength { expected: usize, found: usize },
    #[error("not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid {kind}: {reason}")]
    InvalidId { kind: &'static str, reason: String },
    #[error("missing 0xFF separator between key parts")]
    MissingSeparator,
}
