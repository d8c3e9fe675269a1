//! Room aliases and the published room directory (Client-Server API: "Room
//! aliases", "Room directory", "Published room directory"; `m.room.canonical_alias`).
//!
//! Only local aliases (`#name:our_server_name`) are stored; another server's
//! alias is resolved by the API layer through federation (`query/directory`).
//!
//! Tables owned here (key → value):
//! - `alias_roomid`: alias → [`AliasRecord`] (the room and who created the alias)
//! - `roomid_alias`: (room id, alias) → `()`: a room's local aliases, by prefix scan
//! - `roomid_published`: room id → `()`: the rooms listed in `/publicRooms`
//!
//! The room itself (existence, membership, power levels, state) is read from
//! [`Rooms`], never written: this module sends no events.

mod public;
#[cfg(test)]
mod tests;

use std::{collections::HashSet, sync::Arc};

use axum::http::StatusCode;
use parking_lot::Mutex;
use ruma::{
    api::error::ErrorKind,
    events::{StateEventType, TimelineEventType},
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue as RawJsonValue, Value};

use crate::{
    error::{Error, Result},
    rooms::{NewEvent, Rooms},
    storage::{Cf, Storage, Table},
};

pub use self::public::{PublicRoomsPage, PublicRoomsQuery};

/// What is stored for a local alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub room_id: OwnedRoomId,
    /// The user who created the mapping: they may always delete it.
    pub creator: OwnedUserId,
}

/// Who is asking: a local user, and whether they are a server administrator
/// (the spec lets servers give administrators extra powers over aliases and
/// the directory; here they skip the membership and power-level checks).
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub user_id: &'a UserId,
    pub is_admin: bool,
}

/// An alias resolved to its room (`GET /directory/room/{roomAlias}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAlias {
    pub room_id: OwnedRoomId,
    /// Servers that can be asked to join through: for a local alias, us.
    pub servers: Vec<OwnedServerName>,
}

pub struct Directory {
    storage: Arc<Storage>,
    server_name: OwnedServerName,
    aliases: Table<OwnedRoomAliasId, AliasRecord>,
    room_aliases: Table<(OwnedRoomId, OwnedRoomAliasId), ()>,
    published: Table<OwnedRoomId, ()>,
    /// Aliases being created right now: claimed under this lock together
    /// with the check that they are free, so two creations of the same alias
    /// cannot both succeed.
    pending: Mutex<HashSet<OwnedRoomAliasId>>,
}

/// An alias claimed for creation: nobody else can create it while this
/// lives. [`Reservation::commit`] stores the mapping; dropping the
/// reservation without committing releases the alias.
pub struct Reservation<'a> {
    directory: &'a Directory,
    alias: OwnedRoomAliasId,
}

impl Reservation<'_> {
    pub fn alias(&self) -> &RoomAliasId {
        &self.alias
    }

    /// Stores alias → room (created by `creator`) durably.
    pub async fn commit(self, room_id: &RoomId, creator: &UserId) -> Result<()> {
        let directory = self.directory;
        let record = AliasRecord {
            room_id: room_id.to_owned(),
            creator: creator.to_owned(),
        };
        let mut batch = directory.storage.batch();
        batch.put(&directory.aliases, &self.alias, &record)?;
        batch.put(
            &directory.room_aliases,
            &(room_id.to_owned(), self.alias.clone()),
            &(),
        )?;
        directory.storage.commit(batch).await?;
        tracing::info!(alias = %self.alias, %room_id, %creator, "room alias created");
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.directory.pending.lock().remove(&self.alias);
    }
}

fn bad_alias(message: impl Into<String>) -> Error {
    Error::new(StatusCode::BAD_REQUEST, ErrorKind::BadAlias, message)
}

/// The room alias grammar (Appendices, "Room aliases"): the localpart may hold
/// any character but `:` and NUL; whitespace is refused too, as it makes
/// aliases that cannot be told apart when displayed.
fn check_localpart(localpart: &str) -> Result<()> {
    if localpart.is_empty()
        || localpart
            .chars()
            .any(|c| c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(Error::invalid_param(format!(
            "Invalid room alias localpart {localpart:?}: it must be non-empty, \
             without ':', NUL or whitespace"
        )));
    }
    Ok(())
}

impl Directory {
    pub fn new(storage: Arc<Storage>, server_name: OwnedServerName) -> Directory {
        Directory {
            aliases: storage.table(Cf::AliasRoomId),
            room_aliases: storage.table(Cf::RoomIdAlias),
            published: storage.table(Cf::RoomIdPublished),
            pending: Mutex::new(HashSet::new()),
            server_name,
            storage,
        }
    }

    fn is_local(&self, alias: &RoomAliasId) -> bool {
        alias.server_name() == self.server_name
    }

    /// Claims `alias` unless it exists or is being created.
    fn reserve(&self, alias: &RoomAliasId) -> Result<Option<Reservation<'_>>> {
        let mut pending = self.pending.lock();
        if pending.contains(alias) || self.aliases.contains(&alias.to_owned())? {
            return Ok(None);
        }
        pending.insert(alias.to_owned());
        Ok(Some(Reservation {
            directory: self,
            alias: alias.to_owned(),
        }))
    }

    /// For `createRoom`'s `room_alias_name`: the full local alias, claimed
    /// before the room is created (400 `M_INVALID_PARAM` for a bad localpart,
    /// 400 `M_ROOM_IN_USE` when taken). Commit it once the room exists.
    pub fn reserve_for_new_room(&self, localpart: &str) -> Result<Reservation<'_>> {
        check_localpart(localpart)?;
        let alias = RoomAliasId::parse(format!("#{localpart}:{}", self.server_name))
            .map_err(|e| Error::invalid_param(format!("Invalid room alias: {e}")))?;
        self.reserve(&alias)?.ok_or_else(|| {
            Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::RoomInUse,
                format!("Room alias {alias} is already taken"),
            )
        })
    }

    /// `PUT /directory/room/{roomAlias}`: a local alias only (400
    /// `M_INVALID_PARAM`), for a room that exists (404) and that the user has
    /// joined (403; administrators excepted); 409 `M_UNKNOWN` if it exists.
    pub async fn create_alias(
        &self,
        rooms: &Rooms,
        requester: Requester<'_>,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<()> {
        if !self.is_local(alias) {
            return Err(Error::invalid_param(format!(
                "Room alias {alias} is not on this server ({})",
                self.server_name
            )));
        }
        check_localpart(alias.alias())?;
        if rooms.room_info(room_id)?.is_none() {
            return Err(Error::not_found(format!("Unknown room {room_id}")));
        }
        if !requester.is_admin && !rooms.is_joined(room_id, requester.user_id)? {
            return Err(Error::forbidden(
                "You must be joined to the room to create an alias for it",
            ));
        }
        let reservation = self.reserve(alias)?.ok_or_else(|| {
            Error::new(
                StatusCode::CONFLICT,
                ErrorKind::Unknown,
                format!("Room alias {alias} already exists"),
            )
        })?;
        reservation.commit(room_id, requester.user_id).await
    }

    /// The stored mapping of a local alias, if any.
    pub fn alias_record(&self, alias: &RoomAliasId) -> Result<Option<AliasRecord>> {
        Ok(self.aliases.get(&alias.to_owned())?)
    }

    /// `GET /directory/room/{roomAlias}` for a local alias, and what
    /// join-by-alias resolves it with: 404 `M_NOT_FOUND` for an unknown one
    /// (and for another server's alias: those go through federation).
    pub fn resolve_alias(&self, alias: &RoomAliasId) -> Result<ResolvedAlias> {
        if !self.is_local(alias) {
            return Err(Error::not_found(format!(
                "Room alias {alias} belongs to another server, and federation is not \
                 enabled here"
            )));
        }
        match self.alias_record(alias)? {
            Some(record) => Ok(ResolvedAlias {
                room_id: record.room_id,
                servers: vec![self.server_name.clone()],
            }),
            None => Err(Error::not_found(format!("Room alias {alias} not found"))),
        }
    }

    /// `DELETE /directory/room/{roomAlias}`: 404 unless it is a known local
    /// alias; allowed to its creator, to members who may send
    /// `m.room.canonical_alias` in its room (the rule the spec's "servers may
    /// choose" note and MSC2432 describe) and to administrators; else 403.
    /// The room's `m.room.canonical_alias` event is left as it is.
    pub async fn delete_alias(
        &self,
        rooms: &Rooms,
        requester: Requester<'_>,
        alias: &RoomAliasId,
    ) -> Result<()> {
        let Some(record) = self.alias_record(alias)?.filter(|_| self.is_local(alias)) else {
            return Err(Error::not_found(format!("Room alias {alias} not found")));
        };
        let allowed = requester.is_admin
            || record.creator == requester.user_id
            || (rooms.is_joined(&record.room_id, requester.user_id)?
                && rooms.can_send_state(
                    &record.room_id,
                    requester.user_id,
                    StateEventType::RoomCanonicalAlias,
                )?);
        if !allowed {
            return Err(Error::forbidden(
                "Only the alias' creator or a room member allowed to change the \
                 canonical alias may delete it",
            ));
        }
        let mut batch = self.storage.batch();
        batch.delete(&self.aliases, &alias.to_owned());
        batch.delete(
            &self.room_aliases,
            &(record.room_id.clone(), alias.to_owned()),
        );
        self.storage.commit(batch).await?;
        tracing::info!(%alias, room_id = %record.room_id, user_id = %requester.user_id, "room alias deleted");
        Ok(())
    }

    /// A room's local aliases, unchecked.
    pub fn aliases_of(&self, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
        let mut aliases = Vec::new();
        for row in self.room_aliases.iter_prefix(&room_id.to_owned()) {
            let ((_, alias), ()) = row?;
            aliases.push(alias);
        }
        Ok(aliases)
    }

    /// `GET /rooms/{roomId}/aliases`: for members joined to the room, or
    /// anyone when its history is `world_readable`; else 403.
    pub fn local_aliases(
        &self,
        rooms: &Rooms,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>> {
        if rooms.room_info(room_id)?.is_none()
            || !(rooms.is_joined(room_id, user_id)? || public::world_readable(rooms, room_id)?)
        {
            return Err(Error::forbidden("You are not a member of the room"));
        }
        self.aliases_of(room_id)
    }

    /// `PUT /rooms/{roomId}/state/m.room.canonical_alias` (Client-Server API
    /// "`m.room.canonical_alias`"; `room_state.yaml` 400s): every alias the new
    /// content adds — `alias` or `alt_aliases` entries not already in the
    /// current event — must be valid (400 `M_INVALID_PARAM`) and point to
    /// `room_id` (400 `M_BAD_ALIAS`). Another server's alias cannot be
    /// checked without federation and is refused with `M_BAD_ALIAS`.
    pub fn check_canonical_alias(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        content: &RawJsonValue,
    ) -> Result<()> {
        let new = canonical_aliases(content)?;
        let current =
            match rooms.current_state_event(room_id, &StateEventType::RoomCanonicalAlias, "")? {
                // The current event passed these checks (or predates them): keep
                // whatever it lists, valid or not.
                Some(pdu) => canonical_aliases(&pdu.content).unwrap_or_default(),
                None => Vec::new(),
            };
        for text in new.iter().filter(|a| !current.contains(a)) {
            let alias = RoomAliasId::parse(text.as_str())
                .map_err(|e| Error::invalid_param(format!("Invalid room alias {text:?}: {e}")))?;
            if !self.is_local(&alias) {
                return Err(bad_alias(format!(
                    "The alias {alias} belongs to another server; canonical aliases \
                     of other servers are not checked here and cannot be set"
                )));
            }
            match self.alias_record(&alias)? {
                Some(record) if record.room_id == room_id => {}
                _ => {
                    return Err(bad_alias(format!(
                        "The alias {alias} does not point to this room"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// The aliases an `m.room.canonical_alias` content lists (`alias` unless
/// null or empty, then `alt_aliases`), as text; 400 `M_INVALID_PARAM` when
/// they are not strings.
fn canonical_aliases(content: &RawJsonValue) -> Result<Vec<String>> {
    let content: Value = serde_json::from_str(content.get())
        .map_err(|e| Error::bad_json(format!("Invalid content: {e}")))?;
    let invalid =
        || Error::invalid_param("`alias` must be a string and `alt_aliases` a list of strings");
    let mut out = Vec::new();
    match content.get("alias") {
        None | Some(Value::Null) => {}
        Some(Value::String(alias)) if alias.is_empty() => {}
        Some(Value::String(alias)) => out.push(alias.clone()),
        Some(_) => return Err(invalid()),
    }
    match content.get("alt_aliases") {
        None => {}
        Some(Value::Array(list)) => {
            for alias in list {
                out.push(alias.as_str().ok_or_else(invalid)?.to_owned());
            }
        }
        Some(_) => return Err(invalid()),
    }
    Ok(out)
}

impl Directory {
    /// After a room upgrade (Client-Server API: "Room Upgrades"): the old room's
    /// local aliases and its directory listing move to the replacement, and the
    /// canonical alias event follows them (emptied in the old room).
    pub async fn follow_upgrade(
        &self,
        rooms: &Rooms,
        old: &RoomId,
        new: &RoomId,
        sender: &UserId,
    ) -> Result<()> {
        let mut batch = self.storage.batch();
        for alias in self.aliases_of(old)? {
            if let Some(mut record) = self.aliases.get(&alias)? {
                record.room_id = new.to_owned();
                batch.put(&self.aliases, &alias, &record)?;
            }
            batch.delete(&self.room_aliases, &(old.to_owned(), alias.clone()));
            batch.put(&self.room_aliases, &(new.to_owned(), alias), &())?;
        }
        if self.published.contains(&old.to_owned())? {
            batch.delete(&self.published, &old.to_owned());
            batch.put(&self.published, &new.to_owned(), &())?;
        }
        if !batch.is_empty() {
            self.storage.commit(batch).await?;
        }

        let canonical = StateEventType::RoomCanonicalAlias;
        if let Some(event) = rooms.current_state_event(old, &canonical, "")? {
            let state_event = |content: Box<serde_json::value::RawValue>| NewEvent {
                kind: TimelineEventType::RoomCanonicalAlias,
                state_key: Some(String::new()),
                content,
                redacts: None,
            };
            rooms
                .send(new, sender, state_event(event.content.clone()), None)
                .await?;
            let empty = serde_json::value::to_raw_value(&serde_json::json!({}))
                .map_err(|e| Error::internal(format!("{e}")))?;
            rooms.send(old, sender, state_event(empty), None).await?;
        }
        Ok(())
    }
}
