//! `/sync`'s top-level `presence` section (Client-Server API "Syncing":
//! `presence.events`; module "Presence": "presence events … for users who
//! share a room with the syncing user", and the user's own).

use ruma::{
    api::client::filter::Filter, events::presence::PresenceEvent, presence::PresenceState,
    serde::Raw, UserId,
};
use serde_json::json;
use tokio::time::Instant;

use super::Presence;
use crate::{error::Result, sync::filter::account_data_allowed};

impl Presence {
    /// `m.presence` events for `viewer` over the stream range `(since, upto]`:
    /// users (the viewer included) who share a joined room with the viewer
    /// and whose presence changed in the range; on an initial sync (`since =
    /// None`) the current presence of those who are not `offline`. Filtered
    /// by the request's `presence` filter (`types`, `senders`, `limit`).
    ///
    /// Scans the in-memory table (users seen since start-up), checking room
    /// sharing only for candidates.
    pub fn for_sync(
        &self,
        viewer: &UserId,
        filter: &Filter,
        since: Option<u64>,
        upto: u64,
    ) -> Result<Vec<Raw<PresenceEvent>>> {
        if !self.inner.enabled || !account_data_allowed(filter, "m.presence") {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        let mut candidates: Vec<_> = {
            let users = self.inner.users.lock();
            users
                .map
                .iter()
                .filter(|(_, entry)| match since {
                    None => entry.state != PresenceState::Offline,
                    Some(since) => entry.position > since && entry.position <= upto,
                })
                .filter(|(user, _)| sender_allowed(filter, user))
                .map(|(user, entry)| (user.clone(), entry.content(now)))
                .collect()
        };
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let limit = filter.limit.map_or(usize::MAX, |l| {
            usize::try_from(u64::from(l)).unwrap_or(usize::MAX)
        });
        let rooms = self.inner.joined_rooms(viewer)?;
        let mut events = Vec::new();
        for (user, content) in candidates {
            if events.len() >= limit {
                break;
            }
            if user != viewer && !self.inner.shares_room(&rooms, &user)? {
                continue;
            }
            let event = json!({ "type": "m.presence", "sender": user, "content": content });
            let raw = serde_json::value::to_raw_value(&event).map_err(|e| {
                crate::error::Error::internal(format!("event not serialisable: {e}"))
            })?;
            events.push(Raw::from_json(raw));
        }
        Ok(events)
    }
}

fn sender_allowed(filter: &Filter, user: &UserId) -> bool {
    !filter.not_senders.iter().any(|s| s == user)
        && filter
            .senders
            .as_ref()
            .is_none_or(|senders| senders.iter().any(|s| s == user))
}
