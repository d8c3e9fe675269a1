//! Stored filters (Client-Server API "Filtering": `POST /user/{userId}/filter`,
//! `GET /user/{userId}/filter/{filterId}`) and the filter a `/sync` request
//! names, inline or by id.
//!
//! A filter id is derived from the filter's JSON (a digest), so a client
//! that uploads the same filter at every start-up, as most do, reuses one
//! row instead of adding one each time.

use ruma::{
    api::client::{filter::FilterDefinition, sync::sync_events::v3::Filter},
    OwnedUserId, UserId,
};
use sha2::{Digest, Sha256};

use super::SyncService;
use crate::error::{Error, Result};

/// Default `timeline.limit` when a filter sets none (as Synapse does).
pub const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The largest `timeline.limit` honoured.
pub const MAX_TIMELINE_LIMIT: usize = 500;

impl SyncService {
    /// Stores `filter` for `user` and returns its id.
    pub async fn create_filter(&self, user: &UserId, filter: &FilterDefinition) -> Result<String> {
        let json = serde_json::to_string(filter)
            .map_err(|e| Error::internal(format!("filter not serialisable: {e}")))?;
        let digest = Sha256::digest(json.as_bytes());
        let id = hex::encode(&digest[..8]);
        let mut batch = self.storage.batch();
        batch.put(&self.filters, &(user.to_owned(), id.clone()), &json)?;
        self.storage.commit(batch).await?;
        Ok(id)
    }

    /// A filter `user` stored, or 404 `M_NOT_FOUND`.
    pub fn get_filter(&self, user: &UserId, id: &str) -> Result<FilterDefinition> {
        let key: (OwnedUserId, String) = (user.to_owned(), id.to_owned());
        let Some(json) = self.filters.get(&key)? else {
            return Err(Error::not_found("No such filter"));
        };
        serde_json::from_str(&json).map_err(|e| Error::internal(format!("stored filter: {e}")))
    }

    /// The filter a `/sync` request asks for: none, inline JSON, or an id.
    pub fn resolve_filter(
        &self,
        user: &UserId,
        filter: Option<&Filter>,
    ) -> Result<FilterDefinition> {
        match filter {
            None => Ok(FilterDefinition::default()),
            Some(Filter::FilterDefinition(definition)) => Ok(definition.clone()),
            Some(Filter::FilterId(id)) if id.starts_with('{') => Err(Error::bad_json(
                "The filter parameter is not a valid filter",
            )),
            Some(Filter::FilterId(id)) => self.get_filter(user, id).map_err(|_| {
                Error::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    ruma::api::error::ErrorKind::InvalidParam,
                    format!("Unknown filter id {id}"),
                )
            }),
            Some(_) => Err(Error::invalid_param("Unsupported filter")),
        }
    }
}

/// `room.timeline.limit`, defaulted and bounded.
pub fn timeline_limit(filter: &FilterDefinition) -> usize {
    filter
        .room
        .timeline
        .limit
        .map_or(DEFAULT_TIMELINE_LIMIT, |l| {
            usize::try_from(u64::from(l)).unwrap_or(MAX_TIMELINE_LIMIT)
        })
        .min(MAX_TIMELINE_LIMIT)
}

/// Whether `room.rooms` / `room.not_rooms` let this room through.
pub fn room_allowed(filter: &FilterDefinition, room_id: &ruma::RoomId) -> bool {
    let room = &filter.room;
    !room.not_rooms.iter().any(|r| r == room_id)
        && room
            .rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|r| r == room_id))
}

/// Whether a type passes an account data `Filter` (`types`/`not_types`,
/// with `*` wildcards as in room event filters).
pub fn account_data_allowed(filter: &ruma::api::client::filter::Filter, kind: &str) -> bool {
    let listed = |list: &[String]| list.iter().any(|p| glob(p, kind));
    !listed(&filter.not_types) && filter.types.as_deref().is_none_or(listed)
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.len() >= head.len()
                && text.starts_with(head)
                && (0..=text.len() - head.len())
                    .any(|skip| glob(tail, text.get(head.len() + skip..).unwrap_or("")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_rooms() {
        let mut filter = FilterDefinition::default();
        assert_eq!(timeline_limit(&filter), DEFAULT_TIMELINE_LIMIT);
        filter.room.timeline.limit = Some(5u32.into());
        assert_eq!(timeline_limit(&filter), 5);
        filter.room.timeline.limit = Some(1_000_000u32.into());
        assert_eq!(timeline_limit(&filter), MAX_TIMELINE_LIMIT);

        let (a, b) = (ruma::owned_room_id!("!a:x"), ruma::owned_room_id!("!b:x"));
        assert!(room_allowed(&filter, &a));
        filter.room.rooms = Some(vec![a.clone()]);
        assert!(room_allowed(&filter, &a) && !room_allowed(&filter, &b));
        filter.room.not_rooms = vec![a.clone()];
        assert!(!room_allowed(&filter, &a));
    }

    #[test]
    fn account_data_types_with_wildcards() {
        let mut filter = ruma::api::client::filter::Filter::default();
        assert!(account_data_allowed(&filter, "m.direct"));
        filter.types = Some(vec!["m.*".into()]);
        assert!(account_data_allowed(&filter, "m.direct"));
        assert!(!account_data_allowed(&filter, "org.example"));
        filter.not_types = vec!["m.di*t".into()];
        assert!(!account_data_allowed(&filter, "m.direct"));
        assert!(account_data_allowed(&filter, "m.push_rules"));
    }
}
