//! Typed table handles and write batches.
//!
//! A `Table<K, V>` is a column family from the catalog plus the key and value
//! types a domain binds to it. Reads go straight to RocksDB; writes are
//! collected in a [`Batch`] and committed through the group-commit writer.

use std::marker::PhantomData;
use std::sync::Arc;

use rocksdb::{ColumnFamily, DBIteratorWithThreadMode, Direction, IteratorMode, DB};
use serde::{de::DeserializeOwned, Serialize};

use super::catalog::Cf;
use super::codec::{decode_value, encode_value, KeyCodec, KeyPrefix};
use super::error::StorageError;

/// A typed handle on one catalog table. Cheap to clone, `Send + Sync`.
pub struct Table<K, V> {
    db: Arc<DB>,
    cf: Cf,
    // `fn() -> _` keeps the handle Send + Sync whatever K and V are.
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            db: Arc::clone(&self.db),
            cf: self.cf,
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Table").field(&self.cf.name()).finish()
    }
}

impl<K, V> Table<K, V> {
    pub(crate) fn new(db: Arc<DB>, cf: Cf) -> Self {
        Table {
            db,
            cf,
            _types: PhantomData,
        }
    }

    /// The catalog entry this handle reads and writes.
    pub fn cf(&self) -> Cf {
        self.cf
    }

    fn handle(&self) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(self.cf.name())
            .ok_or(StorageError::MissingTable(self.cf.name()))
    }
}

impl<K: KeyCodec, V: DeserializeOwned> Table<K, V> {
    /// The value stored under `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>, StorageError> {
        let Some(bytes) = self.db.get_pinned_cf(self.handle()?, key.encode())? else {
            return Ok(None);
        };
        decode_value(&bytes)
            .map(Some)
            .map_err(|source| StorageError::CorruptValue {
                table: self.cf.name(),
                source,
            })
    }

    /// Whether `key` is present (without decoding its value).
    pub fn contains(&self, key: &K) -> Result<bool, StorageError> {
        Ok(self
            .db
            .get_pinned_cf(self.handle()?, key.encode())?
            .is_some())
    }

    /// Every entry whose leading key part(s) equal `prefix`, in key order.
    /// E.g. all devices of a user: `devices.iter_prefix(&user_id)` on a
    /// `Table<(OwnedUserId, OwnedDeviceId), _>`.
    pub fn iter_prefix<P: KeyPrefix<K>>(&self, prefix: &P) -> Iter<'_, K, V> {
        self.scan(prefix.encode_prefix())
    }

    /// Every entry of the table, in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.scan(Vec::new())
    }

    fn scan(&self, prefix: Vec<u8>) -> Iter<'_, K, V> {
        let (inner, error) = match self.handle() {
            Ok(cf) => {
                let mode = IteratorMode::From(&prefix, Direction::Forward);
                (Some(self.db.iterator_cf(cf, mode)), None)
            }
            Err(e) => (None, Some(e)),
        };
        Iter {
            inner,
            error,
            prefix,
            table: self.cf.name(),
            _types: PhantomData,
        }
    }
}

/// Iterator over decoded entries; it stops at the end of the prefix range and
/// after the first RocksDB error. Entries that fail to decode are yielded as
/// errors and iteration continues.
pub struct Iter<'a, K, V> {
    inner: Option<DBIteratorWithThreadMode<'a, DB>>,
    error: Option<StorageError>,
    prefix: Vec<u8>,
    table: &'static str,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: KeyCodec, V: DeserializeOwned> Iterator for Iter<'_, K, V> {
    type Item = Result<(K, V), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let (key, value) = match self.inner.as_mut()?.next()? {
            Ok(entry) => entry,
            Err(e) => {
                self.inner = None;
                return Some(Err(e.into()));
            }
        };
        if !key.starts_with(&self.prefix) {
            self.inner = None;
            return None;
        }
        let table = self.table;
        let key = K::decode(&key).map_err(|source| StorageError::CorruptKey { table, source });
        let value =
            decode_value(&value).map_err(|source| StorageError::CorruptValue { table, source });
        Some(key.and_then(|k| Ok((k, value?))))
    }
}

/// One pending operation of a batch, already encoded.
pub(crate) struct Op {
    pub(crate) cf: Cf,
    pub(crate) key: Vec<u8>,
    /// `None` deletes the key.
    pub(crate) value: Option<Vec<u8>>,
}

/// Writes to commit together, atomically: either all are applied or none.
#[derive(Default)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
    pub(crate) bytes: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("ops", &self.ops.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Batch {
    /// An empty batch (same as `Storage::batch`).
    pub fn new() -> Self {
        Batch::default()
    }

    /// Stores `value` under `key`, replacing any previous value. Fails only
    /// if the value cannot be serialised.
    pub fn put<K: KeyCodec, V: Serialize>(
        &mut self,
        table: &Table<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(), StorageError> {
        let value = encode_value(value).map_err(|source| StorageError::Encode {
            table: table.cf.name(),
            source,
        })?;
        self.push(table.cf, key.encode(), Some(value));
        Ok(())
    }

    /// Removes `key` (a no-op if absent).
    pub fn delete<K: KeyCodec, V>(&mut self, table: &Table<K, V>, key: &K) {
        self.push(table.cf, key.encode(), None);
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    fn push(&mut self, cf: Cf, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len);
        self.ops.push(Op { cf, key, value });
    }
}
