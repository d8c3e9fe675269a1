//! One user's presence entry: the timers' state machine and the
//! `m.presence` content (module "Presence").

use ruma::presence::PresenceState;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{ACTIVE_GRANULARITY, IDLE_TIMEOUT, REMOTE_TTL, SYNC_TTL};

/// One user's presence.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) state: PresenceState,
    pub(super) status_msg: Option<String>,
    pub(super) last_active: Instant,
    pub(super) last_seen: Instant,
    /// `/sync` requests (with a heartbeat) under way.
    pub(super) syncing: usize,
    /// Stream position of the last published visible change (0: none).
    pub(super) position: u64,
    /// `unavailable` by the idle timer (not by the user's choice): activity
    /// brings the user back `online`.
    pub(super) idle: bool,
    /// A user of another server, whose server reports the state (`m.presence`
    /// EDUs): our idle and sync timers do not apply, only [`REMOTE_TTL`].
    pub(super) remote: bool,
}

impl Entry {
    pub(super) fn new(now: Instant) -> Entry {
        Entry {
            state: PresenceState::Offline,
            status_msg: None,
            last_active: now,
            last_seen: now,
            syncing: 0,
            position: 0,
            idle: false,
            remote: false,
        }
    }

    /// Applies the timers; returns whether the state changed.
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        let before = self.state.clone();
        if self.remote {
            if self.state != PresenceState::Offline
                && now.duration_since(self.last_seen) > REMOTE_TTL
            {
                self.state = PresenceState::Offline;
            }
            return self.state != before;
        }
        if self.state != PresenceState::Offline
            && self.syncing == 0
            && now.duration_since(self.last_seen) > SYNC_TTL
        {
            self.state = PresenceState::Offline;
        } else if self.state == PresenceState::Online
            && now.duration_since(self.last_active) > IDLE_TIMEOUT
        {
            self.state = PresenceState::Unavailable;
            self.idle = true;
        }
        self.state != before
    }

    /// The `m.presence` content (module "Presence", `m.presence` event).
    pub(super) fn content(&self, now: Instant) -> Value {
        let ago = now.duration_since(self.last_active);
        let mut content = json!({
            "presence": self.state.as_str(),
            "last_active_ago": u64::try_from(ago.as_millis()).unwrap_or(u64::MAX),
        });
        if self.state == PresenceState::Online {
            content["currently_active"] = json!(ago <= ACTIVE_GRANULARITY);
        }
        if let Some(msg) = &self.status_msg {
            content["status_msg"] = json!(msg);
        }
        content
    }
}
