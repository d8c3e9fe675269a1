//! Presence (Client-Server API, module "Presence": `PUT/GET
//! /presence/{userId}/status`, the `m.presence` event in `/sync`'s top-level
//! `presence` section).
//!
//! ## States and timers (values are Synapse's defaults)
//!
//! Each user has a state (`online` / `unavailable` / `offline`), an
//! optional `status_msg`, the instant of their last *activity* and the
//! instant they were last *seen* (a sync or a `PUT` status).
//! - **Activity** ("`last_active_ago`: the length of time since an action was
//!   performed by this user"): a `PUT` with `online`, a `/sync` with
//!   `set_presence=online` (the default), and actions in rooms (sending an
//!   event, a read receipt: [`Presence::active`]), which also bring an idle
//!   (`unavailable`) user back `online`, as Synapse does. `last_active_ago` is computed when
//!   served, never stored as a duration.
//! - **Idle**: `online` with no activity for [`IDLE_TIMEOUT`] (5 min) becomes
//!   `unavailable` (the spec: "`unavailable` … for example, idle").
//! - **Heartbeat / TTL**: a user with no `/sync` under way and not seen for
//!   [`SYNC_TTL`] (30 s, Synapse's `SYNC_ONLINE_TIMEOUT`) goes `offline`.
//!   `set_presence=offline` on `/sync` is no heartbeat: such a sync neither
//!   marks the user online nor keeps them so.
//! - `currently_active` is `true` for `online` users active within
//!   [`ACTIVE_GRANULARITY`] (60 s), computed when served.
//!
//! A background task checks the timers every [`CHECK_INTERVAL`] (5 s, as
//! Synapse's `_handle_timeouts`), costing nothing when nobody is online.
//!
//! ## Stream positions and coalescing
//!
//! As for typing (`crate::typing`), a *visible* change (state or
//! `status_msg`; not `last_active_ago` alone) takes a durable marker position
//! on the global stream inside an `rooms::stream` `InFlight` guard, so tokens
//! order presence with everything else and a restart never reuses a position.
//! Changes are not published one by one: the first change opens a
//! [`BATCH_WINDOW`] (100 ms); every user changed within it shares one marker,
//! one commit and one round of wake-ups (the changed users and the members of
//! their joined rooms, through the stream's notes).
//!
//! ## Persistence
//!
//! Presence lives in memory only. The last state per user would survive a
//! restart if stored, but after a restart every client must sync again anyway
//! (so everyone is correctly `offline` until they do), and only `status_msg`
//! would be lost. The markers are durable (one group-committed write per
//! batch, not per change), which is all tokens need.
//!
//! ## Disabled (`[presence] enabled = false`)
//!
//! As Synapse: `PUT` is accepted and ignored, `GET` answers `offline`, `/sync`
//! carries no presence events, and syncs cost no presence work.

mod entry;
mod sync;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use ruma::{presence::PresenceState, OwnedRoomId, OwnedUserId, UserId};
use tokio::time::Instant;

use self::entry::Entry;
use crate::{
    error::{Error, Result},
    rooms::{stream::Stream, Membership},
    storage::{Cf, Storage, Table},
};

/// `online` without activity for this long becomes `unavailable`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Not syncing and not seen for this long: `offline`.
pub const SYNC_TTL: Duration = Duration::from_secs(30);
/// `currently_active` while the last activity is at most this old.
pub const ACTIVE_GRANULARITY: Duration = Duration::from_secs(60);
/// Changes within this window share one stream position and one wake-up.
pub const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// How often the timers are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// A user of another server with no update from it for this long is shown
/// `offline` (Synapse's federation presence timeout).
pub const REMOTE_TTL: Duration = Duration::from_secs(30 * 60);

/// Hears about published presence changes of local users (federation sends
/// them as `m.presence` EDUs): user and `m.presence` content.
pub trait PresenceOutbox: Send + Sync {
    fn changed(&self, updates: Vec<(OwnedUserId, serde_json::Value)>);
}

/// What `GET /presence/{userId}/status` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub presence: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<Duration>,
    pub currently_active: Option<bool>,
}

#[derive(Default)]
struct Users {
    map: HashMap<OwnedUserId, Entry>,
    /// Users changed since the last published batch.
    pending: HashSet<OwnedUserId>,
    /// Whether a batch is open (a flush is scheduled).
    scheduled: bool,
}

struct Inner {
    enabled: bool,
    storage: Arc<Storage>,
    stream: Arc<Stream>,
    memberships: Table<(OwnedUserId, OwnedRoomId), Membership>,
    users: Mutex<Users>,
    outbox: std::sync::OnceLock<Arc<dyn PresenceOutbox>>,
}

/// The presence domain. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

impl Presence {
    /// Builds the service; with `enabled`, call [`Presence::start`] inside
    /// the runtime to run the timers.
    pub fn new(storage: Arc<Storage>, stream: Arc<Stream>, enabled: bool) -> Presence {
        Presence {
            inner: Arc::new(Inner {
                enabled,
                memberships: storage.table(Cf::UserRoomIdMembership),
                storage,
                stream,
                users: Mutex::new(Users::default()),
                outbox: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Local users' published changes go to `outbox` from now on.
    pub fn set_outbox(&self, outbox: Arc<dyn PresenceOutbox>) {
        let _ = self.inner.outbox.set(outbox);
    }

    /// A presence update for `user` from their own server (`m.presence`
    /// EDU): shown to our users who share a room with them, like a local
    /// change. Ignored when presence is disabled.
    pub fn remote_update(
        &self,
        user: &UserId,
        state: PresenceState,
        status_msg: Option<String>,
        last_active_ago: Option<Duration>,
    ) {
        if !self.inner.enabled {
            return;
        }
        let now = Instant::now();
        let _ = self.inner.update(user, |entry| {
            entry.remote = true;
            entry.last_seen = now;
            entry.last_active = last_active_ago
                .and_then(|ago| now.checked_sub(ago))
                .unwrap_or(now);
            entry.state = state;
            entry.status_msg = status_msg;
        });
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Spawns the timer task (idle → `unavailable`, TTL → `offline`).
    pub fn start(&self) {
        if !self.inner.enabled {
            return;
        }
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                inner.expire(Instant::now());
            }
        });
    }

    /// `PUT /presence/{userId}/status`: only for yourself (403
    /// `M_FORBIDDEN`). Accepted and ignored when presence is disabled.
    pub fn set(
        &self,
        sender: &UserId,
        target: &UserId,
        state: PresenceState,
        status_msg: Option<String>,
    ) -> Result<()> {
        if sender != target {
            return Err(Error::forbidden(
                "Cannot set the presence state of another user",
            ));
        }
        if !self.inner.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let _ = self.inner.update(target, |entry| {
            if state == PresenceState::Online {
                entry.last_active = now;
            }
            entry.last_seen = now;
            entry.state = state;
            entry.status_msg = status_msg;
        });
        Ok(())
    }

    /// `user` acted (sent an event, read something): resets their idle
    /// timer, and an idle `unavailable` user is `online` again. A user
    /// who is `offline` (not syncing) or chose `unavailable` through `PUT`
    /// keeps that state; only the activity time moves.
    pub fn active(&self, user: &UserId) {
        if !self.inner.enabled {
            return;
        }
        let now = Instant::now();
        let mut users = self.inner.users.lock();
        let Some(entry) = users.map.get_mut(user) else {
            return;
        };
        entry.last_active = now;
        if entry.state == PresenceState::Unavailable && entry.idle {
            entry.state = PresenceState::Online;
            entry.idle = false;
            users.pending.insert(user.to_owned());
            self.inner.schedule(&mut users);
        }
    }

    /// The user's presence now (`offline` when unknown or disabled).
    pub fn status(&self, user: &UserId) -> Status {
        let now = Instant::now();
        let users = self.inner.users.lock();
        match users.map.get(user).filter(|_| self.inner.enabled) {
            Some(entry) => Status {
                presence: entry.state.clone(),
                status_msg: entry.status_msg.clone(),
                last_active_ago: Some(now.duration_since(entry.last_active)),
                currently_active: (entry.state == PresenceState::Online)
                    .then(|| now.duration_since(entry.last_active) <= ACTIVE_GRANULARITY),
            },
            None => Status {
                presence: PresenceState::Offline,
                status_msg: None,
                last_active_ago: None,
                currently_active: None,
            },
        }
    }

    /// A `/sync` begins for `user` with `set_presence` (module "Presence":
    /// "the client can set presence … via the `set_presence` parameter"):
    /// `online` is activity, `unavailable` sets that state, both are a
    /// heartbeat kept up until the returned guard drops; `offline` (or
    /// presence disabled) changes nothing and returns `None`.
    ///
    /// When this changes the user's visible state, the open batch is
    /// published at once (one commit, only on such transitions): the sync's
    /// own token then covers the change, so the client gets it in this
    /// response and is not woken again for its own heartbeat.
    pub async fn syncing(&self, user: &UserId, set_presence: &PresenceState) -> Option<SyncGuard> {
        if !self.inner.enabled {
            return None;
        }
        let now = Instant::now();
        let changed = match set_presence {
            PresenceState::Online => self.inner.update(user, |entry| {
                entry.state = PresenceState::Online;
                entry.last_active = now;
                entry.last_seen = now;
                entry.syncing += 1;
            }),
            PresenceState::Unavailable => self.inner.update(user, |entry| {
                entry.state = PresenceState::Unavailable;
                entry.last_seen = now;
                entry.syncing += 1;
            }),
            _ => return None,
        };
        if changed {
            if let Err(e) = self.inner.publish().await {
                tracing::warn!("publishing presence changes: {e}");
            }
        }
        Some(SyncGuard {
            inner: Arc::clone(&self.inner),
            user: user.to_owned(),
        })
    }

    /// Whether `viewer` may see `target`'s presence: themselves, or a user
    /// they share a joined room with.
    pub fn may_see(&self, viewer: &UserId, target: &UserId) -> Result<bool> {
        if viewer == target {
            return Ok(true);
        }
        let rooms = self.inner.joined_rooms(viewer)?;
        self.inner.shares_room(&rooms, target)
    }
}

/// Keeps a syncing user's heartbeat up; the TTL starts when it drops.
pub struct SyncGuard {
    inner: Arc<Inner>,
    user: OwnedUserId,
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        let now = Instant::now();
        if let Some(entry) = self.inner.users.lock().map.get_mut(&self.user) {
            entry.syncing = entry.syncing.saturating_sub(1);
            entry.last_seen = now;
        }
    }
}

impl Inner {
    /// Changes `user`'s entry; a visible change joins the open batch (and
    /// is reported: `true`).
    fn update(self: &Arc<Self>, user: &UserId, change: impl FnOnce(&mut Entry)) -> bool {
        let mut users = self.users.lock();
        let entry = users
            .map
            .entry(user.to_owned())
            .or_insert_with(|| Entry::new(Instant::now()));
        let before = (entry.state.clone(), entry.status_msg.clone());
        // A state the user sets is a choice, not idleness.
        entry.idle = false;
        change(entry);
        let changed = (entry.state.clone(), entry.status_msg.clone()) != before;
        if changed {
            users.pending.insert(user.to_owned());
            self.schedule(&mut users);
        }
        changed
    }

    /// Applies the timers to every entry.
    fn expire(self: &Arc<Self>, now: Instant) {
        let mut users = self.users.lock();
        let changed: Vec<_> = users
            .map
            .iter_mut()
            .filter_map(|(user, entry)| entry.expire(now).then(|| user.clone()))
            .collect();
        if !changed.is_empty() {
            users.pending.extend(changed);
            self.schedule(&mut users);
        }
    }

    /// Opens a batch unless one is open: it is published after the window.
    fn schedule(self: &Arc<Self>, users: &mut Users) {
        if users.scheduled {
            return;
        }
        users.scheduled = true;
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(BATCH_WINDOW).await;
            if let Err(e) = inner.publish().await {
                tracing::warn!("publishing presence changes: {e}");
            }
        });
    }

    /// Publishes the open batch: one durable marker for all its users, then
    /// one round of wake-ups (module docs).
    async fn publish(&self) -> Result<()> {
        let mut in_flight = self.stream.begin();
        let changed: Vec<OwnedUserId> = {
            let mut users = self.users.lock();
            users.scheduled = false;
            users.pending.drain().collect()
        };
        if changed.is_empty() {
            in_flight.done();
            return Ok(());
        }
        let mut batch = self.storage.batch();
        let position = self.stream.allocate_marker(&mut batch)?;
        self.storage.commit(batch).await?;
        {
            let mut users = self.users.lock();
            for user in &changed {
                if let Some(entry) = users.map.get_mut(user) {
                    entry.position = entry.position.max(position);
                }
            }
        }
        if let Some(outbox) = self.outbox.get() {
            let now = Instant::now();
            let users = self.users.lock();
            let local: Vec<(OwnedUserId, serde_json::Value)> = changed
                .iter()
                .filter_map(|user| {
                    let entry = users.map.get(user)?;
                    (!entry.remote).then(|| (user.clone(), entry.content(now)))
                })
                .collect();
            drop(users);
            if !local.is_empty() {
                outbox.changed(local);
            }
        }
        let mut rooms = HashSet::new();
        for user in &changed {
            rooms.extend(self.joined_rooms(user)?);
        }
        for room in rooms {
            in_flight.changed(Some(room), Vec::new());
        }
        in_flight.changed(None, changed);
        in_flight.done();
        Ok(())
    }

    fn joined_rooms(&self, user: &UserId) -> Result<HashSet<OwnedRoomId>> {
        let mut rooms = HashSet::new();
        for row in self.memberships.iter_prefix(&user.to_owned()) {
            let ((_, room), membership) = row?;
            if membership == Membership::Join {
                rooms.insert(room);
            }
        }
        Ok(rooms)
    }

    fn shares_room(&self, rooms: &HashSet<OwnedRoomId>, other: &UserId) -> Result<bool> {
        for row in self.memberships.iter_prefix(&other.to_owned()) {
            let ((_, room), membership) = row?;
            if membership == Membership::Join && rooms.contains(&room) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
