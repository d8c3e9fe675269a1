//! Feathur's storage layer: one RocksDB database, one column family per
//! table, every table declared in [`catalog`].
//!
//! This module knows nothing of accounts or rooms. Domains bind key and value
//! types to a catalog entry with [`Storage::table`], read through the
//! returned [`Table`], and write by committing a [`Batch`]; all writes go
//! through the group-commit [`writer`], so concurrent requests share fsyncs.
//! Nothing outside this module builds byte keys ([`codec`] does).

pub mod catalog;
pub mod codec;
pub mod error;
pub mod table;
pub mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{Cache, ColumnFamily, ColumnFamilyDescriptor, FlushOptions, Options, DB};
use serde::{de::DeserializeOwned, Serialize};

pub use catalog::{Access, Cf};
pub use codec::{KeyCodec, KeyPart, KeyPrefix};
pub use error::{CodecError, StorageError};
pub use table::{Batch, Iter, Table};
pub use writer::{Durable, WriteStats};

use catalog::{db_options, BLOCK_CACHE_BYTES};
use writer::Writer;

/// The schema this build writes. Bump it (and add a migration) whenever the
/// meaning of stored bytes changes.
pub const SCHEMA_VERSION: u64 = 1;

/// Key of the schema version in the `meta` table.
const SCHEMA_KEY: &str = "schema_version";

/// How to open the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The server: takes RocksDB's lock, creates what is missing.
    ReadWrite,
    /// Inspection (`feathur db check`): no lock, creates and writes nothing,
    /// works beside a running server (seeing its data as of the open).
    ReadOnly,
}

/// An open database.
pub struct Storage {
    db: Arc<DB>,
    path: PathBuf,
    mode: OpenMode,
    /// On-disk column families unknown to this build's catalog.
    unknown_tables: Vec<String>,
    /// `None` in read-only mode. Dropping it drains pending batches.
    writer: Option<Writer>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (in read-write mode creating) the database in `dir`.
    ///
    /// Fails at once with [`StorageError::Locked`] if another process has it
    /// open read-write, and with [`StorageError::NewerSchema`] if a newer
    /// Feathur wrote it.
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Arc<Storage>, StorageError> {
        if mode == OpenMode::ReadWrite && exists(dir) {
            // Refuse a newer database before a read-write open can change it
            // (creating tables, replaying its log).
            drop(Storage::open(dir, OpenMode::ReadOnly)?);
        }
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let (db, on_disk) = match mode {
            OpenMode::ReadWrite => open_read_write(dir, &cache)?,
            OpenMode::ReadOnly => open_read_only(dir, &cache)?,
        };
        let unknown_tables = on_disk
            .into_iter()
            .filter(|name| name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .filter(|name| Cf::from_name(name).is_none())
            .collect();
        let mut storage = Storage {
            db: Arc::new(db),
            path: dir.to_owned(),
            mode,
            unknown_tables,
            writer: None,
        };
        let found = storage.schema_version()?;
        if let Some(found) = found.filter(|&v| v > SCHEMA_VERSION) {
            return Err(StorageError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if mode == OpenMode::ReadWrite {
            storage.writer = Some(Writer::start(Arc::clone(&storage.db))?);
            if found.is_none() {
                tracing::info!(path = %dir.display(), "initialising new database");
                let mut batch = storage.batch();
                batch.put(&storage.meta(), &SCHEMA_KEY.to_owned(), &SCHEMA_VERSION)?;
                storage.commit_blocking(batch)?;
            }
        }
        Ok(Arc::new(storage))
    }

    /// A typed handle on the catalog table `cf`.
    pub fn table<K: KeyCodec, V: Serialize + DeserializeOwned>(&self, cf: Cf) -> Table<K, V> {
        Table::new(Arc::clone(&self.db), cf)
    }

    /// An empty batch to fill and [`commit`](Storage::commit).
    pub fn batch(&self) -> Batch {
        Batch::new()
    }

    /// Commits `batch` atomically; returns once it is in a synced WAL write.
    /// Does not block the runtime. An empty batch is a no-op.
    pub async fn commit(&self, batch: Batch) -> Result<(), StorageError> {
        self.apply(batch).await?.wait().await
    }

    /// First half of [`commit`](Storage::commit): returns once `batch` is
    /// applied (visible to reads, in the OS's cache, not yet synced), with
    /// the [`Durable`] to await before acknowledging the write to anyone.
    /// Lets a writer release its lock before the fsync (see `writer`).
    pub async fn apply(&self, batch: Batch) -> Result<Durable, StorageError> {
        if batch.is_empty() {
            return Ok(Durable::ready());
        }
        self.writer()?.apply(batch)
    }

    /// [`apply`](Storage::apply), then releases `guard` (a lock the batch
    /// was built under): the next holder of the lock reads what this batch
    /// wrote, and the caller awaits durability outside the lock.
    pub async fn apply_holding<G>(&self, batch: Batch, guard: G) -> Result<Durable, StorageError> {
        let durable = self.apply(batch).await;
        drop(guard);
        durable
    }

    /// Waits until every batch applied so far is durable: for answers built
    /// on what others applied (a repeated transaction id finds the event of
    /// a send that is still syncing).
    pub async fn sync_barrier(&self) -> Result<(), StorageError> {
        self.writer()?.sync_barrier().await
    }

    /// [`commit`](Storage::commit) for synchronous code (the CLI). Blocks the
    /// calling thread: do not use from async code.
    pub fn commit_blocking(&self, batch: Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.writer()?.commit_blocking(batch)
    }

    fn writer(&self) -> Result<&Writer, StorageError> {
        self.writer.as_ref().ok_or(StorageError::ReadOnly)
    }

    /// Verifies the schema version and that every catalog table exists.
    pub fn check(&self) -> Result<CheckReport, StorageError> {
        let mut tables = Vec::with_capacity(Cf::ALL.len());
        for &cf in Cf::ALL {
            let estimated_keys = match self.db.cf_handle(cf.name()) {
                Some(handle) => Some(
                    self.db
                        .property_int_value_cf(handle, rocksdb::properties::ESTIMATE_NUM_KEYS)?
                        .unwrap_or(0),
                ),
                None => None,
            };
            tables.push(TableReport {
                name: cf.name(),
                present: estimated_keys.is_some(),
                estimated_keys,
            });
        }
        Ok(CheckReport {
            path: self.path.clone(),
            schema_version: self.schema_version()?,
            supported_schema: SCHEMA_VERSION,
            tables,
            unknown_tables: self.unknown_tables.clone(),
        })
    }

    /// Syncs the WAL and flushes every memtable to disk, so the next open
    /// has nothing to replay. Call on shutdown. No-op when read-only.
    pub fn flush(&self) -> Result<(), StorageError> {
        if self.mode == OpenMode::ReadOnly {
            return Ok(());
        }
        self.db.flush_wal(true)?;
        let handles: Vec<&ColumnFamily> = Cf::ALL
            .iter()
            .filter_map(|cf| self.db.cf_handle(cf.name()))
            .collect();
        self.db.flush_cfs_opt(&handles, &FlushOptions::default())?;
        Ok(())
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the database was opened.
    pub fn mode(&self) -> OpenMode {
        self.mode
    }

    /// Group-commit counters (all zero when read-only).
    pub fn write_stats(&self) -> WriteStats {
        self.writer.as_ref().map(Writer::stats).unwrap_or_default()
    }

    fn meta(&self) -> Table<String, u64> {
        self.table(Cf::Meta)
    }

    /// The stored schema version; `None` for a new database (or, read-only,
    /// a missing `meta` table).
    fn schema_version(&self) -> Result<Option<u64>, StorageError> {
        if self.db.cf_handle(Cf::Meta.name()).is_none() {
            return Ok(None);
        }
        self.meta().get(&SCHEMA_KEY.to_owned())
    }
}

/// Result of [`Storage::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub path: PathBuf,
    /// `None` if the database has no recorded schema version.
    pub schema_version: Option<u64>,
    /// The newest schema this build understands ([`SCHEMA_VERSION`]).
    pub supported_schema: u64,
    /// One entry per catalog table, in catalog order.
    pub tables: Vec<TableReport>,
    /// Column families on disk that this build does not know (harmless).
    pub unknown_tables: Vec<String>,
}

/// One catalog table in a [`CheckReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableReport {
    pub name: &'static str,
    pub present: bool,
    /// RocksDB's estimate, `None` if the table is missing.
    pub estimated_keys: Option<u64>,
}

impl CheckReport {
    /// Names of catalog tables absent from the database.
    pub fn missing_tables(&self) -> Vec<&'static str> {
        self.tables
            .iter()
            .filter(|t| !t.present)
            .map(|t| t.name)
            .collect()
    }

    /// Schema current and every catalog table present.
    pub fn is_ok(&self) -> bool {
        self.schema_version == Some(self.supported_schema) && self.tables.iter().all(|t| t.present)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "database: {}", self.path.display())?;
        match self.schema_version {
            Some(v) => writeln!(f, "schema: {v} (supported: {})", self.supported_schema)?,
            None => writeln!(f, "schema: MISSING (supported: {})", self.supported_schema)?,
        }
        for t in &self.tables {
            match t.estimated_keys {
                Some(n) => writeln!(f, "  {:<28} ~{n} keys", t.name)?,
                None => writeln!(f, "  {:<28} MISSING", t.name)?,
            }
        }
        for name in &self.unknown_tables {
            writeln!(f, "  {name:<28} (unknown to this build)")?;
        }
        write!(f, "{}", if self.is_ok() { "OK" } else { "PROBLEMS FOUND" })
    }
}

/// Descriptors for catalog tables (those in `existing` only, if `only_existing`)
/// and for every on-disk table the catalog does not know: RocksDB refuses a
/// read-write open that leaves an existing column family out.
fn descriptors(
    cache: &Cache,
    existing: &[String],
    only_existing: bool,
) -> Vec<ColumnFamilyDescriptor> {
    let mut descriptors: Vec<_> = Cf::ALL
        .iter()
        .filter(|cf| !only_existing || existing.iter().any(|n| n == cf.name()))
        .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf.options(cache)))
        .collect();
    descriptors.extend(
        existing
            .iter()
            .filter(|name| Cf::from_name(name).is_none())
            .map(|name| ColumnFamilyDescriptor::new(name.as_str(), Options::default())),
    );
    descriptors
}

/// Whether `dir` holds a RocksDB database.
fn exists(dir: &Path) -> bool {
    dir.join("CURRENT").is_file()
}

fn open_read_write(dir: &Path, cache: &Cache) -> Result<(DB, Vec<String>), StorageError> {
    std::fs::create_dir_all(dir)?;
    let opts = db_options(true);
    let existing = if exists(dir) {
        DB::list_cf(&opts, dir)?
    } else {
        Vec::new()
    };
    let db = DB::open_cf_descriptors(&opts, dir, descriptors(cache, &existing, false))
        .map_err(|e| open_error(e, dir))?;
    Ok((db, existing))
}

fn open_read_only(dir: &Path, cache: &Cache) -> Result<(DB, Vec<String>), StorageError> {
    if !exists(dir) {
        return Err(StorageError::Missing {
            path: dir.to_owned(),
        });
    }
    let opts = db_options(false);
    let existing = DB::list_cf(&opts, dir)?;
    let db =
        DB::open_cf_descriptors_read_only(&opts, dir, descriptors(cache, &existing, true), false)
            .map_err(|e| open_error(e, dir))?;
    Ok((db, existing))
}

/// Recognises RocksDB's LOCK-file failures (another process: "While lock
/// file"; this process: "lock hold by current process"). RocksDB does not
/// wait for the lock, so a second open fails immediately.
fn open_error(e: rocksdb::Error, dir: &Path) -> StorageError {
    let message = e.to_string();
    if message.contains("While lock file") || message.contains("lock hold by current process") {
        StorageError::Locked {
            path: dir.to_owned(),
            source: e,
        }
    } else {
        StorageError::Rocks(e)
    }
}
