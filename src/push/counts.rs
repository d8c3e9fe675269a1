//! Unread notification counts (Client-Server API, "Push Notifications" →
//! "Receiving notifications", and "Threading" → "Threaded read receipts" /
//! "Unread thread notifications").
//!
//! Every event whose push actions notify a user leaves one row
//! `(user, room, scope, stream position) → {highlight, thread}` in
//! `userroomscopepos_notification` (scope: `""` for the main timeline,
//! the thread root for a thread). A read receipt (or the user's own event,
//! which the spec treats as one) deletes the rows it covers: an unthreaded
//! receipt every row up to its position, a `main` receipt the main
//! timeline's, a threaded receipt that thread's. The counts `/sync` shows
//! are a prefix scan of the remaining rows, so they stay exact without
//! read-modify-write of counters; their cost grows with the *unread*
//! notifications only. Deleted rows leave RocksDB tombstones until
//! compaction: a walk that started at the prefix would step over every one
//! (a busy sender's own events delete their rows on every send), so walks
//! of the main timeline start above the newest receipt that covers it.
//!
//! `userroomthread_pushreadpos` remembers the newest receipt position per
//! scope (`""` unthreaded, `"main"`, or the thread root id) so that an
//! event evaluated after a later receipt (concurrent senders in one room)
//! is not counted.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use parking_lot::Mutex;

use ruma::{
    api::client::sync::sync_events::UnreadNotificationsCount, events::receipt::ReceiptThread,
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::Result,
    storage::{table::Order, Batch, Cf, Storage, Table},
};

/// One unread notification of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The actions had a `highlight` tweak.
    pub highlight: bool,
    /// The thread root when the event belongs to a thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<OwnedEventId>,
}

/// The counts of one room as `/sync` shows them.
#[derive(Debug, Default, Clone)]
pub struct UnreadCounts {
    /// `unread_notifications`: the whole room, or only the main timeline
    /// when threads are counted separately.
    pub room: UnreadNotificationsCount,
    /// `unread_thread_notifications`, keyed by thread root (empty unless
    /// asked for).
    pub threads: BTreeMap<OwnedEventId, UnreadNotificationsCount>,
}

/// The read scope a receipt applies to, as stored.
fn scope_of(thread: &ReceiptThread) -> Option<String> {
    match thread {
        ReceiptThread::Unthreaded => Some(String::new()),
        ReceiptThread::Main => Some("main".to_owned()),
        ReceiptThread::Thread(root) => Some(root.to_string()),
        _ => None,
    }
}

/// The row scope of a notification: `""` for the main timeline, the root
/// id for a thread. Main rows sort after thread rows (the key separator
/// is 0xFF), so one prefix walk meets every thread first.
fn row_scope(thread: Option<&OwnedEventId>) -> String {
    thread.map_or_else(String::new, |root| root.to_string())
}

/// The read scope, besides `""` (unthreaded), that covers a row scope.
fn read_scope_of(row_scope: &str) -> &str {
    if row_scope.is_empty() {
        "main"
    } else {
        row_scope
    }
}

/// (user, room, read scope).
type ReadKey = (OwnedUserId, OwnedRoomId, String);

/// Read positions cached at most; the cache starts afresh when full.
const MAX_CACHED_READ_POSITIONS: usize = 100_000;

/// Raises the cached read position of `key` to `position` (never lowers
/// it); the new value.
fn raise(cache: &Mutex<HashMap<ReadKey, u64>>, key: ReadKey, position: u64) -> u64 {
    let mut cache = cache.lock();
    if cache.len() >= MAX_CACHED_READ_POSITIONS {
        cache.clear();
    }
    let entry = cache.entry(key).or_default();
    *entry = (*entry).max(position);
    *entry
}

#[derive(Clone)]
pub(super) struct Counts {
    rows: Table<(OwnedUserId, OwnedRoomId, String, u64), Notification>,
    read: Table<ReadKey, u64>,
    /// Read positions as applied, for the service that applies them (every
    /// event reads each recipient's). Updated only after a batch is applied,
    /// and only upwards, so it may lag the table but never leads it; a
    /// lagging floor only makes a walk start lower.
    read_cache: Option<Arc<Mutex<HashMap<ReadKey, u64>>>>,
}

impl Counts {
    /// Reads straight from the tables (for readers such as `/sync`).
    pub(super) fn new(storage: &Storage) -> Counts {
        Counts {
            rows: storage.table(Cf::UserRoomScopePosNotification),
            read: storage.table(Cf::UserRoomThreadPushReadPos),
            read_cache: None,
        }
    }

    /// With a cache of read positions, for the one service that writes them.
    pub(super) fn with_cache(storage: &Storage) -> Counts {
        Counts {
            read_cache: Some(Arc::default()),
            ..Counts::new(storage)
        }
    }

    /// Tells the cache that a read staged with [`Counts::stage_read`] is applied.
    pub(super) fn read_applied(
        &self,
        user: &UserId,
        room: &RoomId,
        thread: &ReceiptThread,
        position: u64,
    ) {
        let (Some(cache), Some(scope)) = (&self.read_cache, scope_of(thread)) else {
            return;
        };
        raise(cache, (user.to_owned(), room.to_owned(), scope), position);
    }

    /// Moves rows of the first layout (user, room, position), which had no
    /// scope in the key, into the current table. Run once at start-up.
    pub(super) fn migrate_legacy(storage: &Storage) -> Result<()> {
        let legacy: Table<(OwnedUserId, OwnedRoomId, u64), Notification> =
            storage.table(Cf::UserRoomPosNotificationLegacy);
        let rows = Counts::new(storage).rows;
        let mut batch = storage.batch();
        for row in legacy.iter() {
            let ((user, room, position), notification) = row?;
            let scope = row_scope(notification.thread.as_ref());
            batch.delete(&legacy, &(user.clone(), room.clone(), position));
            batch.put(&rows, &(user, room, scope, position), &notification)?;
        }
        if !batch.is_empty() {
            tracing::info!(
                rows = batch.len() / 2,
                "moved unread notifications to their new table"
            );
            storage.commit_blocking(batch)?;
        }
        Ok(())
    }

    fn read_position(&self, user: &UserId, room: &RoomId, scope: &str) -> Result<u64> {
        let key = (user.to_owned(), room.to_owned(), scope.to_owned());
        let Some(cache) = &self.read_cache else {
            return Ok(self.read.get(&key)?.unwrap_or(0));
        };
        if let Some(&position) = cache.lock().get(&key) {
            return Ok(position);
        }
        let stored = self.read.get(&key)?.unwrap_or(0);
        Ok(raise(cache, key, stored))
    }

    /// No row of `row_scope` lies at or below this position: receipts
    /// deleted those that existed, and [`Counts::stage_notification`]
    /// refuses new ones there. Walks start above it, so they never step
    /// over the deleted rows' tombstones.
    fn floor(&self, user: &UserId, room: &RoomId, row_scope: &str) -> Result<u64> {
        Ok(self.read_position(user, room, "")?.max(self.read_position(
            user,
            room,
            read_scope_of(row_scope),
        )?))
    }

    /// Stages a notification unless a receipt already covers `position`.
    pub(super) fn stage_notification(
        &self,
        batch: &mut Batch,
        user: &UserId,
        room: &RoomId,
        position: u64,
        notification: &Notification,
    ) -> Result<()> {
        let scope = row_scope(notification.thread.as_ref());
        if self.floor(user, room, &scope)? >= position {
            return Ok(());
        }
        let key = (user.to_owned(), room.to_owned(), scope, position);
        batch.put(&self.rows, &key, notification)?;
        Ok(())
    }

    /// Stages a receipt of `user` in `thread` at `position`: the notifications
    /// it covers are deleted. Returns false when it changes nothing.
    pub(super) fn stage_read(
        &self,
        batch: &mut Batch,
        user: &UserId,
        room: &RoomId,
        thread: &ReceiptThread,
        position: u64,
    ) -> Result<bool> {
        let Some(scope) = scope_of(thread) else {
            return Ok(false);
        };
        if self.read_position(user, room, &scope)? >= position {
            return Ok(false);
        }
        // The row scopes the receipt covers; an unthreaded one covers
        // every thread too (found by walking them below).
        let row_scopes: Vec<String> = match scope.as_str() {
            "" | "main" => vec![String::new()],
            root => vec![root.to_owned()],
        };
        for row_scope in &row_scopes {
            self.delete_rows(batch, user, room, row_scope, position)?;
        }
        if scope.is_empty() {
            let prefix = (user.to_owned(), room.to_owned());
            for row in self.rows.iter_prefix(&prefix) {
                let (key, _) = row?;
                if key.2.is_empty() {
                    break; // the main rows: done above
                }
                if key.3 <= position {
                    batch.delete(&self.rows, &key);
                }
            }
        }
        let key = (user.to_owned(), room.to_owned(), scope);
        batch.put(&self.read, &key, &position)?;
        Ok(true)
    }

    /// Stages the deletion of `row_scope`'s rows up to `position`.
    fn delete_rows(
        &self,
        batch: &mut Batch,
        user: &UserId,
        room: &RoomId,
        row_scope: &str,
        position: u64,
    ) -> Result<()> {
        let floor = self.floor(user, room, row_scope)?;
        let prefix = (user.to_owned(), room.to_owned(), row_scope.to_owned());
        let start = (
            prefix.0.clone(),
            prefix.1.clone(),
            prefix.2.clone(),
            floor + 1,
        );
        for row in self
            .rows
            .iter_prefix_from(&prefix, Some(&start), Order::Ascending)
        {
            let (key, _) = row?;
            if key.3 > position {
                break;
            }
            batch.delete(&self.rows, &key);
        }
        Ok(())
    }

    /// The counts of `user` in `room` for notifications at or below `upto`.
    pub(super) fn unread(
        &self,
        user: &UserId,
        room: &RoomId,
        upto: u64,
        split_threads: bool,
    ) -> Result<UnreadCounts> {
        let mut main = (0u64, 0u64);
        let mut threads: BTreeMap<OwnedEventId, (u64, u64)> = BTreeMap::new();
        let mut add = |thread: Option<OwnedEventId>, notification: &Notification| {
            let slot = match (thread, split_threads) {
                (Some(root), true) => threads.entry(root).or_default(),
                _ => &mut main,
            };
            slot.0 += 1;
            slot.1 += u64::from(notification.highlight);
        };
        // Threads first (they sort first), then the main timeline from its floor.
        let prefix = (user.to_owned(), room.to_owned());
        for row in self.rows.iter_prefix(&prefix) {
            let ((_, _, scope, position), notification) = row?;
            if scope.is_empty() {
                break;
            }
            if position <= upto {
                add(notification.thread.clone(), &notification);
            }
        }
        let floor = self.floor(user, room, "")?;
        let main_prefix = (user.to_owned(), room.to_owned(), String::new());
        let start = (prefix.0, prefix.1, String::new(), floor + 1);
        for row in self
            .rows
            .iter_prefix_from(&main_prefix, Some(&start), Order::Ascending)
        {
            let ((_, _, _, position), notification) = row?;
            if position > upto {
                break;
            }
            add(None, &notification);
        }
        let count = |(notifications, highlights): (u64, u64)| {
            let mut count = UnreadNotificationsCount::new();
            count.notification_count = Some(UInt::new_saturating(notifications));
            count.highlight_count = Some(UInt::new_saturating(highlights));
            count
        };
        Ok(UnreadCounts {
            room: count(main),
            threads: threads.into_iter().map(|(k, v)| (k, count(v))).collect(),
        })
    }
}
