//! Unread notification counts (Client-Server API, "Push Notifications" →
//! "Receiving notifications", and "Threading" → "Threaded read receipts" /
//! "Unread thread notifications").
//!
//! Every event whose push actions notify a user leaves one row
//! `(user, room, stream position) → {highlight, thread}` in
//! `userroompos_notification`. A read receipt (or the user's own event,
//! which the spec treats as one) deletes the rows it covers: an unthreaded
//! receipt every row up to its position, a `main` receipt the main
//! timeline's, a threaded receipt that thread's. The counts `/sync` shows
//! are a prefix scan of the remaining rows, so they stay exact without
//! read-modify-write of counters; their cost grows with the *unread*
//! notifications only.
//!
//! `userroomthread_pushreadpos` remembers the newest receipt position per
//! scope (`""` unthreaded, `"main"`, or the thread root id) so that an
//! event evaluated after a later receipt (concurrent senders in one room)
//! is not counted.

use std::collections::BTreeMap;

use ruma::{
    api::client::sync::sync_events::UnreadNotificationsCount, events::receipt::ReceiptThread,
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::Result,
    storage::{Batch, Cf, Storage, Table},
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

/// Whether a receipt in `scope` covers a notification in `thread`.
fn covers(scope: &str, thread: Option<&OwnedEventId>) -> bool {
    match (scope, thread) {
        ("", _) => true,
        ("main", None) => true,
        (root, Some(thread)) => thread.as_str() == root,
        _ => false,
    }
}

#[derive(Clone)]
pub(super) struct Counts {
    rows: Table<(OwnedUserId, OwnedRoomId, u64), Notification>,
    read: Table<(OwnedUserId, OwnedRoomId, String), u64>,
}

impl Counts {
    pub(super) fn new(storage: &Storage) -> Counts {
        Counts {
            rows: storage.table(Cf::UserRoomPosNotification),
            read: storage.table(Cf::UserRoomThreadPushReadPos),
        }
    }

    fn read_position(&self, user: &UserId, room: &RoomId, scope: &str) -> Result<u64> {
        let key = (user.to_owned(), room.to_owned(), scope.to_owned());
        Ok(self.read.get(&key)?.unwrap_or(0))
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
        let thread_scope = notification
            .thread
            .as_ref()
            .map_or("main".to_owned(), |t| t.to_string());
        if self.read_position(user, room, "")? >= position
            || self.read_position(user, room, &thread_scope)? >= position
        {
            return Ok(());
        }
        let key = (user.to_owned(), room.to_owned(), position);
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
        let key = (user.to_owned(), room.to_owned(), scope.clone());
        batch.put(&self.read, &key, &position)?;
        let prefix = (user.to_owned(), room.to_owned());
        for row in self.rows.iter_prefix(&prefix) {
            let (key, notification) = row?;
            if key.2 > position {
                break;
            }
            if covers(&scope, notification.thread.as_ref()) {
                batch.delete(&self.rows, &key);
            }
        }
        Ok(true)
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
        let prefix = (user.to_owned(), room.to_owned());
        for row in self.rows.iter_prefix(&prefix) {
            let ((_, _, position), notification) = row?;
            if position > upto {
                break;
            }
            let slot = match (&notification.thread, split_threads) {
                (Some(root), true) => threads.entry(root.clone()).or_default(),
                _ => &mut main,
            };
            slot.0 += 1;
            slot.1 += u64::from(notification.highlight);
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
