//! Typed table handles and write batches.
//!
//! A `Table<K, V>` is a column family from the catalog plus the key and value
//! types a domain binds to it. Reads go straight to RocksDB; writes are
//! collected in a [`Batch`] and committed through the group-commit writer.

use std::marker::PhantomData;
use std::sync::Arc;

use rocksdb::{ColumnFamily, DBIteratorWithThreadMode, Direction, IteratorMode, ReadOptions, DB};
use serde::{de::DeserializeOwned, Serialize};

use super::catalog::Cf;
use super::codec::{decode_value, encode_value, KeyCodec, KeyPrefix};
use super::error::StorageError;

/// Which way a scan walks the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Smallest key first.
    Ascending,
    /// Greatest key first.
    Descending,
}

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

impl<K: KeyCodec, V> Table<K, V> {
    /// The greatest key in the table, without decoding its value: one
    /// reverse seek. Counters keyed by big-endian integers recover their
    /// high-water mark with it at start-up.
    pub fn last_key(&self) -> Result<Option<K>, StorageError> {
        let mut raw = self.db.raw_iterator_cf(self.handle()?);
        raw.seek_to_last();
        raw.status()?;
        let Some(key) = raw.key() else {
            return Ok(None);
        };
        K::decode(key)
            .map(Some)
            .map_err(|source| StorageError::CorruptKey {
                table: self.cf.name(),
                source,
            })
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

    /// Entries under `prefix` from `start` on, in `order`: ascending yields
    /// the keys `>= start`, descending the keys `<= start` (greatest first).
    /// `start = None` begins at the prefix's first (ascending) or last
    /// (descending) entry. `start` should itself begin with `prefix`.
    /// This is how a timeline pages: seek to a position, walk either way.
    pub fn iter_prefix_from<P: KeyPrefix<K>>(
        &self,
        prefix: &P,
        start: Option<&K>,
        order: Order,
    ) -> Iter<'_, K, V> {
        self.scan_from(prefix.encode_prefix(), start.map(KeyCodec::encode), order)
    }

    /// Entries of the whole table from `start` on, in `order` (ascending:
    /// keys `>= start`). A global stream keyed by position reads "everything
    /// after this token" with it; with a tuple key, seeking past one first
    /// part's keys lists the distinct first parts in one seek each.
    pub fn iter_from(&self, start: &K, order: Order) -> Iter<'_, K, V> {
        self.scan_from(Vec::new(), Some(start.encode()), order)
    }

    /// Every entry of the table, in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        self.scan(Vec::new())
    }

    fn scan(&self, prefix: Vec<u8>) -> Iter<'_, K, V> {
        self.scan_from(prefix, None, Order::Ascending)
    }

    /// The iterator is bounded to the prefix range in RocksDB itself (lower
    /// and upper bound), so a descending scan can start at the range's end
    /// and neither direction reads past it.
    fn scan_from(&self, prefix: Vec<u8>, start: Option<Vec<u8>>, order: Order) -> Iter<'_, K, V> {
        let (inner, error) = match self.handle() {
            Ok(cf) => {
                let mut opts = ReadOptions::default();
                if !prefix.is_empty() {
                    opts.set_iterate_lower_bound(prefix.clone());
                    if let Some(end) = prefix_end(&prefix) {
                        opts.set_iterate_upper_bound(end);
                    }
                }
                let mode = match (&start, order) {
                    (Some(key), Order::Ascending) => IteratorMode::From(key, Direction::Forward),
                    (Some(key), Order::Descending) => IteratorMode::From(key, Direction::Reverse),
                    (None, Order::Ascending) => IteratorMode::Start,
                    (None, Order::Descending) => IteratorMode::End,
                };
                (Some(self.db.iterator_cf_opt(cf, opts, mode)), None)
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

/// The smallest byte string greater than every key that starts with
/// `prefix`; `None` when there is none (`prefix` is all 0xFF bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{OpenMode, Storage};

    fn collect<K: KeyCodec, V: DeserializeOwned>(iter: Iter<'_, K, V>) -> Vec<K> {
        iter.map(|r| r.unwrap().0).collect()
    }

    #[test]
    fn seeks_both_ways_within_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let t: Table<(u64, u64), u64> = storage.table(Cf::UserDeviceIdTxnIdResponse);
        let mut batch = storage.batch();
        // Neighbouring prefixes on both sides, including one whose encoding
        // ends in 0xFF bytes (its range end needs a carry).
        for room in [0u64, 1, 2, 0xFF, 0x1FF, u64::MAX] {
            for pos in [0u64, 3, 5, 9, u64::MAX] {
                batch.put(&t, &(room, pos), &pos).unwrap();
            }
        }
        storage.commit_blocking(batch).unwrap();

        let all = [0u64, 3, 5, 9, u64::MAX];
        for room in [1u64, 0xFF, u64::MAX] {
            let keys = |start: Option<u64>, order| -> Vec<u64> {
                let start = start.map(|p| (room, p));
                let iter = t.iter_prefix_from(&room, start.as_ref(), order);
                collect(iter)
                    .into_iter()
                    .map(|(r, p)| {
                        assert_eq!(r, room);
                        p
                    })
                    .collect()
            };
            assert_eq!(keys(None, Order::Ascending), all);
            assert_eq!(keys(None, Order::Descending), [u64::MAX, 9, 5, 3, 0]);
            // Inclusive starts, on and between existing keys.
            assert_eq!(keys(Some(5), Order::Ascending), [5, 9, u64::MAX]);
            assert_eq!(keys(Some(6), Order::Ascending), [9, u64::MAX]);
            assert_eq!(keys(Some(5), Order::Descending), [5, 3, 0]);
            assert_eq!(keys(Some(4), Order::Descending), [3, 0]);
            assert_eq!(keys(Some(0), Order::Descending), [0]);
            assert_eq!(keys(Some(u64::MAX), Order::Ascending), [u64::MAX]);
        }
        // An absent prefix yields nothing either way.
        assert!(collect(t.iter_prefix_from(&7u64, None, Order::Descending)).is_empty());
        assert!(collect(t.iter_prefix_from(&7u64, None, Order::Ascending)).is_empty());
        // The unbounded scans are unchanged.
        assert_eq!(t.iter_prefix(&2u64).count(), 5);
        assert_eq!(t.iter().count(), 30);
    }

    #[test]
    fn string_prefixes_do_not_leak_into_longer_ones() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let t: Table<(String, u64), u64> = storage.table(Cf::UserDeviceIdTxnIdResponse);
        let mut batch = storage.batch();
        for (s, n) in [("a", 1), ("ab", 1), ("ab", 2), ("abc", 1), ("ac", 0)] {
            batch.put(&t, &(s.to_owned(), n), &n).unwrap();
        }
        storage.commit_blocking(batch).unwrap();
        let ab = "ab".to_owned();
        let desc = collect(t.iter_prefix_from(&ab, None, Order::Descending));
        assert_eq!(desc, [(ab.clone(), 2), (ab.clone(), 1)]);
        let from = (ab.clone(), 1);
        let asc = collect(t.iter_prefix_from(&ab, Some(&from), Order::Ascending));
        assert_eq!(asc, [(ab.clone(), 1), (ab.clone(), 2)]);
    }

    #[test]
    fn iter_from_starts_at_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let t: Table<(u64, u64), u64> = storage.table(Cf::UserDeviceIdTxnIdResponse);
        let mut batch = storage.batch();
        for key in [(1u64, 1u64), (1, 5), (2, 0), (3, 7)] {
            batch.put(&t, &key, &0).unwrap();
        }
        storage.commit_blocking(batch).unwrap();
        assert_eq!(
            collect(t.iter_from(&(1, 5), Order::Ascending)),
            [(1, 5), (2, 0), (3, 7)]
        );
        assert_eq!(
            collect(t.iter_from(&(1, u64::MAX), Order::Ascending)),
            [(2, 0), (3, 7)]
        );
        assert!(collect(t.iter_from(&(3, 8), Order::Ascending)).is_empty());
    }

    #[test]
    fn last_key_is_the_greatest() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let t: Table<u64, String> = storage.table(Cf::RegistrationTokenInfo);
        assert_eq!(t.last_key().unwrap(), None);
        let mut batch = storage.batch();
        for n in [5u64, 256, 1, 255] {
            batch.put(&t, &n, &n.to_string()).unwrap();
        }
        storage.commit_blocking(batch).unwrap();
        assert_eq!(t.last_key().unwrap(), Some(256));
        let as_user: Table<ruma::OwnedUserId, String> = storage.table(Cf::RegistrationTokenInfo);
        assert!(matches!(
            as_user.last_key(),
            Err(StorageError::CorruptKey { .. })
        ));
    }

    #[test]
    fn prefix_end_carries_over_ff_bytes() {
        assert_eq!(prefix_end(b"ab\xFF"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
