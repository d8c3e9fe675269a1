//! Rooms: the event DAG, its state and its timeline (spec: "Rooms", room
//! versions, Server-Server API "PDUs" and "Authorisation rules").
//!
//! Every new event goes through [`Rooms::append_local`]: build the PDU from the
//! room's current state and forward extremities, sign it, check it against the
//! room version's auth rules, then persist event, state delta, timeline entry,
//! extremities and membership indexes in ONE atomic batch. The room's lock
//! is held until that batch is applied (visible), not until it is synced:
//! the room's next event is built while the fsync runs, and shares it
//! (`storage::writer`); answers still wait for durability.
//!
//! Tables owned here (key → value):
//! - `eventid_pdu`: event id → the signed PDU
//! - `roomid_info`: room id → [`RoomInfo`] (room version)
//! - `roomid_forwardextremities`: room id → the DAG's current leaves
//! - `userroomid_membership` / `roomuserid_membership`: membership indexes
//! - `userdeviceidtxnid_response`: (user, device, txn id) → event id
//!
//! The parts: `pdu` (the event type), `auth` (ruma state-res), `short` (id
//! interning), `state` (layered snapshots), `timeline` (stream positions),
//! `redact` (redactions), `relations` (relation and thread indexes, `/relations`,
//! `/threads`), `bundle` (bundled aggregations), `context` (`/context`).

pub mod auth;
mod bundle;
mod context;
mod create;
mod history;
mod membership;
pub mod pdu;
mod pdu_cache;
mod power;
mod read;
mod redact;
mod relations;
pub mod remote;
#[cfg(test)]
mod remote_tests;
mod resolve;
mod restricted;
mod serve;
pub mod short;
pub mod state;
pub mod stream;
pub mod sync_support;
#[cfg(test)]
mod testing;
pub mod timeline;
mod upgrade;

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex as StdMutex},
};

use axum::http::StatusCode;
use feathur_federation::SigningKey;
use ruma::{
    api::error::ErrorKind,
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomId, RoomVersionId, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    error::{Error, Result},
    storage::{Cf, Storage, Table},
};

pub use self::{
    context::Context,
    create::{CreateRoom, Preset},
    history::HistoryPage,
    membership::{Change, MemberProfile},
    pdu::Pdu,
    read::{make_token, parse_token, Page},
    relations::{RelationsPage, RelationsQuery, ThreadsPage},
    remote::{Applied, Outcome},
    state::StateMap,
    timeline::Direction,
    upgrade::Upgrade,
};

/// What the server must remember about a room outside its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomInfo {
    pub version: RoomVersionId,
}

/// A membership as indexed for quick lookups (the event itself is in the state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
}

impl Membership {
    /// The membership an `m.room.member` event sets; `None` if its content has
    /// none. Unknown values count as leave, as the auth rules treat them.
    pub fn of(pdu: &Pdu) -> Option<Membership> {
        #[derive(Deserialize)]
        struct Content {
            membership: String,
        }
        let content: Content = serde_json::from_str(pdu.content.get()).ok()?;
        Some(match content.membership.as_str() {
            "join" => Membership::Join,
            "invite" => Membership::Invite,
            "ban" => Membership::Ban,
            "knock" => Membership::Knock,
            _ => Membership::Leave,
        })
    }
}

/// A client's transaction: the same (user, device, txn id) yields the same event.
pub struct Txn<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a ruma::DeviceId,
    pub txn_id: &'a str,
}

/// A new event as a local user asks for it.
pub struct NewEvent {
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Box<RawJsonValue>,
    pub redacts: Option<OwnedEventId>,
}

/// Told about each event once it is durable (sent with [`Rooms::send`], or
/// accepted from another server), before the committed stream position
/// passes it (the `push` domain evaluates push rules for unread counts;
/// `typing` ends the typing of members who leave). Failures are the hook's
/// to log: the event is already stored.
pub trait EventHook: Send + Sync {
    fn committed<'a>(
        &'a self,
        rooms: &'a Rooms,
        pdu: &'a Pdu,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

pub struct Rooms {
    storage: Arc<Storage>,
    server_name: OwnedServerName,
    signing_key: Arc<SigningKey>,
    default_version: RoomVersionId,
    ids: short::ShortIds,
    state: state::StateStore,
    timeline: timeline::Timeline,
    relations: relations::RelationIndex,
    pdus: Table<OwnedEventId, Pdu>,
    pdu_cache: pdu_cache::PduCache,
    rejected: Table<OwnedEventId, String>,
    invite_state: Table<OwnedEventId, Vec<serde_json::Value>>,
    history: Table<(u64, u64), OwnedEventId>,
    history_index: Table<OwnedEventId, u64>,
    infos: Table<OwnedRoomId, RoomInfo>,
    extremities: Table<OwnedRoomId, Vec<OwnedEventId>>,
    user_memberships: Table<(OwnedUserId, OwnedRoomId), Membership>,
    room_memberships: Table<(OwnedRoomId, OwnedUserId), Membership>,
    txns: Table<(OwnedUserId, String, String), OwnedEventId>,
    /// One writer per room at a time: prev_events, state and extremities of
    /// an event are read and replaced together.
    room_locks: StdMutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    /// Writers in flight: the committed position and wake-ups (`stream`).
    stream: Arc<stream::Stream>,
    /// Told of each committed local event, in the order added.
    event_hooks: parking_lot::RwLock<Vec<Arc<dyn EventHook>>>,
    /// Where local events go to the other servers in their rooms; set at
    /// start-up (rooms exist without it in tests and tools).
    sending: std::sync::OnceLock<crate::sending::Sending>,
}

impl Rooms {
    pub fn new(
        storage: Arc<Storage>,
        server_name: OwnedServerName,
        signing_key: Arc<SigningKey>,
        default_version: RoomVersionId,
    ) -> Result<Rooms> {
        let ids = short::ShortIds::new(&storage)?;
        let timeline = timeline::Timeline::new(&storage)?;
        Ok(Rooms {
            state: state::StateStore::new(&storage, ids.clone()),
            stream: stream::Stream::new(&storage, timeline.clone()),
            timeline,
            relations: relations::RelationIndex::new(&storage),
            ids,
            pdus: storage.table(Cf::EventIdPdu),
            pdu_cache: pdu_cache::PduCache::default(),
            rejected: storage.table(Cf::EventIdRejected),
            invite_state: storage.table(Cf::EventIdInviteState),
            history: storage.table(Cf::RoomIdBackSeqEventId),
            history_index: storage.table(Cf::EventIdBackSeq),
            infos: storage.table(Cf::RoomIdInfo),
            extremities: storage.table(Cf::RoomIdForwardExtremities),
            user_memberships: storage.table(Cf::UserRoomIdMembership),
            room_memberships: storage.table(Cf::RoomUserIdMembership),
            txns: storage.table(Cf::UserDeviceIdTxnIdResponse),
            room_locks: StdMutex::new(HashMap::new()),
            event_hooks: parking_lot::RwLock::new(Vec::new()),
            sending: std::sync::OnceLock::new(),
            server_name,
            signing_key,
            default_version,
            storage,
        })
    }

    /// Adds an [`EventHook`] (domains attach theirs at start-up).
    pub fn add_event_hook(&self, hook: Arc<dyn EventHook>) {
        self.event_hooks.write().push(hook);
    }

    /// Local events are queued for the other servers in their room from now on.
    pub fn set_sending(&self, sending: crate::sending::Sending) {
        let _ = self.sending.set(sending);
    }

    /// Stages `pdu` for delivery to every other server with a member
    /// joined to its room, and for the target's server of a membership
    /// event (a kicked, banned or invited remote user must learn of it).
    fn queue_for_servers(
        &self,
        batch: &mut crate::storage::Batch,
        pdu: &Pdu,
    ) -> Result<crate::sending::Queued> {
        let Some(sending) = self.sending.get() else {
            return Ok(crate::sending::Queued::default());
        };
        let mut servers = self.servers_in_room(&pdu.room_id)?;
        if pdu.kind == TimelineEventType::RoomMember {
            if let Some(target) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()) {
                if !servers.iter().any(|s| s == target.server_name()) {
                    servers.push(target.server_name().to_owned());
                }
            }
        }
        sending.queue_pdu(batch, servers.iter().map(|s| &**s), &pdu.event_id)
    }

    /// Queues an already stored event for `servers` (e.g. the resident
    /// server passing on a join it accepted through `send_join`).
    pub async fn forward_to_servers(
        &self,
        event_id: &EventId,
        servers: &[OwnedServerName],
    ) -> Result<()> {
        if let Some(sending) = self.sending.get() {
            sending
                .send_pdu(servers.iter().map(|s| &**s), event_id)
                .await?;
        }
        Ok(())
    }

    /// The database, for callers that record their own facts in a batch.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// The room's forward extremities (the DAG's current leaves).
    pub fn forward_extremities(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        Ok(self
            .extremities
            .get(&room_id.to_owned())?
            .unwrap_or_default())
    }

    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }

    /// The room versions this server creates rooms in.
    pub fn supported_versions() -> &'static [RoomVersionId] {
        &[RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
    }

    pub fn default_version(&self) -> &RoomVersionId {
        &self.default_version
    }

    async fn lock_room(&self, room_id: &RoomId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.room_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(room_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    pub fn room_info(&self, room_id: &RoomId) -> Result<Option<RoomInfo>> {
        Ok(self.infos.get(&room_id.to_owned())?)
    }

    fn rules(version: &RoomVersionId) -> Result<RoomVersionRules> {
        version.rules().ok_or_else(|| {
            Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::UnsupportedRoomVersion,
                format!("Room version {version} is not supported"),
            )
        })
    }

    /// The stream position of an event in its room's timeline.
    pub fn position_of(&self, event_id: &EventId) -> Result<Option<u64>> {
        Ok(self
            .timeline
            .position_of(event_id)?
            .map(|(_, position)| position))
    }

    /// The newest stream position handed out.
    pub fn current_position(&self) -> u64 {
        self.timeline.current_position()
    }

    pub fn get_pdu(&self, event_id: &EventId) -> Result<Option<Pdu>> {
        if let Some(pdu) = self.pdu_cache.get(event_id) {
            return Ok(Some(pdu));
        }
        let generation = self.pdu_cache.generation();
        let pdu = self.pdus.get(&event_id.to_owned())?;
        if let Some(pdu) = &pdu {
            self.pdu_cache.insert(generation, pdu);
        }
        Ok(pdu)
    }

    /// The current state of a room as (type, state key) → event id.
    pub fn current_state_ids(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<((StateEventType, String), OwnedEventId)>> {
        let map = self.current_state_snapshot(room_id)?;
        self.resolve_state_map(&map)
    }

    fn resolve_state_map(
        &self,
        map: &StateMap,
    ) -> Result<Vec<((StateEventType, String), OwnedEventId)>> {
        let mut out = Vec::with_capacity(map.len());
        for (&shortstatekey, &shorteventid) in map {
            let key = self.ids.state_key_of(shortstatekey)?;
            let event_id = self.ids.event_id(shorteventid)?;
            match (key, event_id) {
                (Some(key), Some(event_id)) => out.push((key, event_id)),
                _ => {
                    return Err(Error::internal(
                        "state snapshot refers to unknown short ids",
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The current state event for (type, state key), if any.
    pub fn current_state_event(
        &self,
        room_id: &RoomId,
        event_type: &StateEventType,
        state_key: &str,
    ) -> Result<Option<Pdu>> {
        let map = self.current_state_snapshot(room_id)?;
        self.state_event_in(&map, event_type, state_key)
    }

    /// The event at (type, state key) in a state snapshot, if any.
    pub fn state_event_in(
        &self,
        map: &StateMap,
        event_type: &StateEventType,
        state_key: &str,
    ) -> Result<Option<Pdu>> {
        let Some(shortstatekey) = self.ids.state_key(event_type, state_key)? else {
            return Ok(None);
        };
        let Some(&shorteventid) = map.get(&shortstatekey) else {
            return Ok(None);
        };
        match self.ids.event_id(shorteventid)? {
            Some(event_id) => self.get_pdu(&event_id),
            None => Ok(None),
        }
    }

    pub fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<Membership>> {
        Ok(self
            .room_memberships
            .get(&(room_id.to_owned(), user_id.to_owned()))?)
    }

    /// Rooms the user has joined.
    pub fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        let mut rooms = Vec::new();
        for row in self.user_memberships.iter_prefix(&user_id.to_owned()) {
            let ((_, room_id), membership) = row?;
            if membership == Membership::Join {
                rooms.push(room_id);
            }
        }
        Ok(rooms)
    }

    /// Members of a room with their current membership.
    pub fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, Membership)>> {
        let mut members = Vec::new();
        for row in self.room_memberships.iter_prefix(&room_id.to_owned()) {
            let ((_, user_id), membership) = row?;
            members.push((user_id, membership));
        }
        Ok(members)
    }

    /// Sends an event as a local user, deduplicated by `txn` when given.
    pub async fn send(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event: NewEvent,
        txn: Option<Txn<'_>>,
    ) -> Result<OwnedEventId> {
        let guard = self.lock_room(room_id).await;
        let mut in_flight = self.stream.begin();
        // A transaction id is scoped to the device and the endpoint, and the
        // endpoint names the room: length-prefix the room id to keep it unambiguous.
        let txn_key = txn.map(|t| {
            let scope = format!("{}:{room_id}{}", room_id.as_str().len(), t.txn_id);
            (t.user_id.to_owned(), t.device_id.to_string(), scope)
        });
        if let Some(key) = &txn_key {
            if let Some(event_id) = self.txns.get(key)? {
                drop(guard);
                // The first send of this transaction may still be syncing:
                // answer only once its event is durable.
                self.storage.sync_barrier().await?;
                return Ok(event_id);
            }
        }
        let Some(info) = self.room_info(room_id)? else {
            return Err(Error::not_found("Unknown room"));
        };
        let mut batch = self.storage.batch();
        let pdu = self.append_local(&mut batch, room_id, &info, sender, event)?;
        if let Some(key) = &txn_key {
            batch.put(&self.txns, key, &pdu.event_id)?;
        }
        let queued = self.queue_for_servers(&mut batch, &pdu)?;
        // The room's next event may be built on this one as soon as it is
        // visible; the answer waits until it is durable.
        let durable = self.apply_event(batch, guard, &pdu).await?;
        durable.wait().await?;
        if let Some(sending) = self.sending.get() {
            sending.wake(queued);
        }
        let hooks = self.event_hooks.read().clone();
        for hook in hooks {
            hook.committed(self, &pdu).await;
        }
        let target = (pdu.kind == TimelineEventType::RoomMember)
            .then(|| pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()))
            .flatten();
        in_flight.changed(Some(room_id.to_owned()), target.into_iter().collect());
        in_flight.done();
        Ok(pdu.event_id)
    }

    /// Applies the batch of an event that entered the timeline, releases
    /// the room's lock (`guard`) and keeps the PDU cache right: a redaction
    /// may have rewritten stored events, any other event is cached at once
    /// (the room's next event reads it as a prev event, woken syncs as news).
    async fn apply_event<G>(
        &self,
        batch: crate::storage::Batch,
        guard: G,
        pdu: &Pdu,
    ) -> Result<crate::storage::Durable> {
        let generation = self.pdu_cache.generation();
        let durable = self.storage.apply_holding(batch, guard).await?;
        if pdu.kind == TimelineEventType::RoomRedaction {
            self.pdu_cache.invalidate();
        } else {
            self.pdu_cache.insert(generation, pdu);
        }
        Ok(durable)
    }

    /// Builds, signs and auth-checks a local event on the current state
    /// without storing it: an invite of another server's user, which that
    /// server must countersign before it is stored (with
    /// [`Rooms::accept_remote`]) and sent.
    pub async fn build_unstored(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event: NewEvent,
    ) -> Result<Pdu> {
        let guard = self.lock_room(room_id).await;
        let in_flight = self.stream.begin();
        let Some(info) = self.room_info(room_id)? else {
            return Err(Error::not_found("Unknown room"));
        };
        // Staged into a batch that is dropped: only the checks count.
        let mut scratch = self.storage.batch();
        let pdu = self.append_local(&mut scratch, room_id, &info, sender, event)?;
        drop(scratch);
        in_flight.done();
        drop(guard);
        Ok(pdu)
    }

    /// Builds, signs, auth-checks and stages one local event on top of the
    /// room's current state. The caller holds the room lock and commits.
    fn append_local(
        &self,
        batch: &mut crate::storage::Batch,
        room_id: &RoomId,
        info: &RoomInfo,
        sender: &UserId,
        event: NewEvent,
    ) -> Result<Pdu> {
        let rules = Self::rules(&info.version)?;
        let shortroomid = self.ids.room_or_create(room_id, batch)?;
        let snapshot = self.state.room_current(shortroomid)?;
        let current = match snapshot {
            Some(s) => self.state.load(s)?,
            None => Arc::new(StateMap::new()),
        };

        let auth_types = auth::auth_types(
            &rules,
            &event.kind,
            sender,
            event.state_key.as_deref(),
            &event.content,
        )
        .map_err(|e| Error::bad_json(format!("Invalid event: {e}")))?;
        self.check_local_redaction(&rules, room_id, sender, &event, &current)?;
        self.check_local_relation(room_id, sender, &event)?;
        let mut auth_events = Vec::new();
        for (event_type, state_key) in &auth_types {
            if let Some(pdu) = self.state_event_in(&current, event_type, state_key)? {
                auth_events.push(pdu.event_id);
            }
        }
        let prev_events = self
            .extremities
            .get(&room_id.to_owned())?
            .unwrap_or_default();
        let mut depth = 0;
        for prev in &prev_events {
            if let Some(pdu) = self.get_pdu(prev)? {
                depth = depth.max(pdu.depth);
            }
        }

        let json = pdu::build_unsigned_pdu(pdu::UnsignedPdu {
            rules: &rules,
            room_id: Some(room_id),
            sender,
            kind: &event.kind,
            state_key: event.state_key.as_deref(),
            content: &event.content,
            prev_events: &prev_events,
            auth_events: &auth_events,
            depth: depth + 1,
            origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
            redacts: event.redacts.as_deref(),
        })
        .map_err(|e| Error::bad_json(format!("Invalid event: {e}")))?;
        let pdu = self.sign(&rules, Some(room_id), json)?;
        self.stage(batch, &rules, &pdu, shortroomid, snapshot, &current)?;
        Ok(pdu)
    }

    /// Adds the content hash and our signature; the event id is the reference
    /// hash. Without `room_id` (a v12 create event) the room id is derived from it.
    fn sign(
        &self,
        rules: &RoomVersionRules,
        room_id: Option<&RoomId>,
        mut json: ruma::CanonicalJsonObject,
    ) -> Result<Pdu> {
        let event_id = feathur_federation::finalize_pdu(
            &self.signing_key,
            self.server_name.as_str(),
            rules,
            &mut json,
        )
        .map_err(|e| match e {
            feathur_federation::PduError::TooLarge => Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::TooLarge,
                "The event is larger than 65535 bytes",
            ),
            e => Error::internal(format!("signing an event failed: {e}")),
        })?;
        let room_id = match room_id {
            Some(room_id) => room_id.to_owned(),
            None => feathur_federation::room_id_for_create_event(&event_id)
                .map_err(|e| Error::internal(format!("deriving the room id failed: {e}")))?,
        };
        Pdu::from_json(event_id, &room_id, json)
            .map_err(|e| Error::internal(format!("built an unreadable event: {e}")))
    }

    /// Checks `pdu` against the auth rules and the `current` state it was built
    /// on, then stages it: event, state delta, timeline, extremities, indexes.
    fn stage(
        &self,
        batch: &mut crate::storage::Batch,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        shortroomid: u64,
        snapshot: Option<u64>,
        current: &StateMap,
    ) -> Result<()> {
        auth::check(
            rules,
            pdu,
            |id| self.get_pdu(id).ok().flatten(),
            |event_type, state_key| {
                self.state_event_in(current, event_type, state_key)
                    .ok()
                    .flatten()
            },
        )
        .map_err(|reason| Error::forbidden(reason.to_string()))?;

        let room_id = &pdu.room_id;
        let event_id = &pdu.event_id;
        let shorteventid = self.ids.event_or_create(event_id, batch)?;
        if let Some(snapshot) = snapshot {
            self.state
                .set_event_state_before(shorteventid, snapshot, batch)?;
        }
        if let Some(state_key) = &pdu.state_key {
            let event_type = StateEventType::from(pdu.kind.to_string());
            let shortstatekey = self
                .ids
                .state_key_or_create(&event_type, state_key, batch)?;
            let next = self
                .state
                .with_event(snapshot, shortstatekey, shorteventid, batch)?;
            self.state.set_room_current(shortroomid, next, batch)?;
            if pdu.kind == TimelineEventType::RoomMember {
                self.index_membership(batch, room_id, pdu)?;
            }
        }
        batch.put(&self.pdus, event_id, pdu)?;
        let position = self.timeline.next_position();
        self.timeline
            .append(shortroomid, position, event_id, batch)?;
        self.index_relation(batch, shortroomid, position, pdu)?;
        self.apply_redaction(batch, rules, pdu, current)?;
        batch.put(&self.extremities, room_id, &vec![event_id.clone()])?;
        Ok(())
    }

    fn index_membership(
        &self,
        batch: &mut crate::storage::Batch,
        room_id: &RoomId,
        pdu: &Pdu,
    ) -> Result<()> {
        let Some(state_key) = &pdu.state_key else {
            return Ok(());
        };
        let Ok(user_id) = UserId::parse(state_key.as_str()) else {
            return Ok(());
        };
        let membership =
            Membership::of(pdu).ok_or_else(|| Error::bad_json("Invalid membership content"))?;
        batch.put(
            &self.user_memberships,
            &(user_id.clone(), room_id.to_owned()),
            &membership,
        )?;
        batch.put(
            &self.room_memberships,
            &(room_id.to_owned(), user_id),
            &membership,
        )?;
        Ok(())
    }
}
