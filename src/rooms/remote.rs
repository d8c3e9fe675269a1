//! Events from other servers (Server-Server API "Checks performed on receipt
//! of a PDU", "Rejection", "Soft failure"; "Joining Rooms").
//!
//! The federation domain verifies signatures and hashes and fetches what
//! is missing; this module runs the room's part of the checks and stores
//! the outcome:
//! - [`Rooms::store_outlier`]: an event known without its place in the
//!   DAG (the state and auth chain of a `send_join`, fetched auth events):
//!   checked against its own auth events only.
//! - [`Rooms::accept_remote`]: an event whose `prev_events` we hold (or
//!   whose state before it was fetched): checked against its auth events,
//!   the state before it (failure: rejected) and the current state
//!   (failure: soft-failed: stored, but neither shown nor built upon); then
//!   it joins the timeline, the forward extremities move and the current
//!   state is re-resolved across them.
//! - [`Rooms::complete_remote_join`]: our join event on top of the state a
//!   resident server returned.
//!
//! Rejected events are kept apart (`eventid_rejected`) so no fetcher hands
//! them to the auth rules, as the rules require.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    EventId, OwnedEventId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, UserId,
};

use super::{auth, stream::InFlight, Membership, Pdu, RoomInfo, Rooms, StateMap};
use crate::{
    error::{Error, Result},
    storage::Durable,
};

/// What became of a received event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and in the timeline.
    Accepted,
    /// We had it already (accepted, soft-failed or as an outlier with state).
    AlreadyKnown,
    /// Passed the auth rules against its own state but not the current
    /// state: stored, kept out of the timeline and the extremities.
    SoftFailed(String),
    /// Failed its auth rules: kept apart, never used.
    Rejected(String),
}

/// What [`Rooms::accept_remote_applied`] wrote: visible, perhaps not yet
/// durable. Pass it to [`Rooms::finish`] before acknowledging the event;
/// dropped unfinished, the event still commits, but its hooks do not run.
#[must_use = "finish it before answering"]
pub struct Applied {
    durable: Option<Durable>,
    /// The event, if it entered the timeline (for the event hooks).
    accepted: Option<Pdu>,
    in_flight: Option<InFlight>,
}

impl Applied {
    fn nothing() -> Applied {
        Applied {
            durable: None,
            accepted: None,
            in_flight: None,
        }
    }

    fn stored(durable: Durable, in_flight: InFlight) -> Applied {
        Applied {
            durable: Some(durable),
            accepted: None,
            in_flight: Some(in_flight),
        }
    }
}

impl Rooms {
    /// Whether we hold `event_id` (accepted or outlier) or rejected it.
    pub fn knows_event(&self, event_id: &EventId) -> Result<bool> {
        Ok(self.pdus.contains(&event_id.to_owned())?
            || self.rejected.contains(&event_id.to_owned())?)
    }

    /// Why we rejected `event_id`, if we did.
    pub fn rejection(&self, event_id: &EventId) -> Result<Option<String>> {
        Ok(self.rejected.get(&event_id.to_owned())?)
    }

    /// Whether `event_id` has its place in the DAG: a state before it.
    pub fn has_state_at(&self, event_id: &EventId) -> Result<bool> {
        let Some(short) = self.ids.event(event_id)? else {
            return Ok(false);
        };
        Ok(self.state.event_state_before(short)?.is_some())
    }

    /// Of `pdu`'s `prev_events`, those with no known state (to fetch).
    pub fn prev_events_without_state(&self, pdu: &Pdu) -> Result<Vec<OwnedEventId>> {
        let mut missing = Vec::new();
        for prev in &pdu.prev_events {
            if !self.has_state_at(prev)? {
                missing.push(prev.clone());
            }
        }
        Ok(missing)
    }

    /// Of `pdu`'s `auth_events`, those we neither hold nor rejected.
    pub fn unknown_auth_events(&self, pdu: &Pdu) -> Result<Vec<OwnedEventId>> {
        let mut missing = Vec::new();
        for id in &pdu.auth_events {
            if !self.knows_event(id)? {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }

    /// Checks `pdu` against its own auth events (state-independent rules,
    /// then the state-dependent ones with the auth events as the state).
    fn check_against_auth_events(&self, rules: &RoomVersionRules, pdu: &Pdu) -> Result<(), String> {
        let mut by_key: HashMap<(StateEventType, String), Pdu> = HashMap::new();
        for id in &pdu.auth_events {
            if self.rejection(id).ok().flatten().is_some() {
                return Err(format!("auth event {id} was rejected"));
            }
            let Some(event) = self.get_pdu(id).ok().flatten() else {
                return Err(format!("auth event {id} is unknown"));
            };
            if let Some(state_key) = &event.state_key {
                by_key.insert(
                    (
                        StateEventType::from(event.kind.to_string()),
                        state_key.clone(),
                    ),
                    event,
                );
            }
        }
        // From room version 12 the create event is not among the auth
        // events: its id is the room id's.
        if rules.authorization.room_create_event_id_as_room_id {
            let create_id = format!("${}", pdu.room_id.as_str().trim_start_matches('!'));
            if let Some(create) = EventId::parse(create_id.as_str())
                .ok()
                .and_then(|id| self.get_pdu(&id).ok().flatten())
            {
                by_key.insert((StateEventType::RoomCreate, String::new()), create);
            }
        }
        auth::check(
            rules,
            pdu,
            |id| self.get_pdu(id).ok().flatten(),
            |kind, key| by_key.get(&(kind.clone(), key.to_owned())).cloned(),
        )
        .map_err(|e| e.to_string())
    }

    /// Stores an event known without its place in the DAG, after checking
    /// it against its own auth events (which must be stored first). A failed
    /// check stores it as rejected. Returns the rejection reason, if any.
    pub async fn store_outlier(&self, version: &RoomVersionId, pdu: Pdu) -> Result<Option<String>> {
        if self.knows_event(&pdu.event_id)? {
            return self.rejection(&pdu.event_id);
        }
        let rules = Self::rules(version)?;
        let missing = self.unknown_auth_events(&pdu)?;
        if !missing.is_empty() {
            // Not a verdict: kept nowhere, so it can be fetched again.
            return Ok(Some(format!("auth events not available: {missing:?}")));
        }
        let mut batch = self.storage.batch();
        let verdict = self.check_against_auth_events(&rules, &pdu);
        match &verdict {
            Ok(()) => {
                self.ids.event_or_create(&pdu.event_id, &mut batch)?;
                if let Some(state_key) = &pdu.state_key {
                    let kind = StateEventType::from(pdu.kind.to_string());
                    self.ids.state_key_or_create(&kind, state_key, &mut batch)?;
                }
                batch.put(&self.pdus, &pdu.event_id, &pdu)?;
            }
            Err(reason) => batch.put(&self.rejected, &pdu.event_id, reason)?,
        }
        self.storage.commit(batch).await?;
        Ok(verdict.err())
    }

    /// Runs the receipt checks on `pdu` (signatures and hashes already
    /// verified; auth events stored) and stores it accordingly.
    /// `state_before` is the state before the event as fetched from a peer
    /// when its `prev_events` are unknown; otherwise it is computed from
    /// the states after its `prev_events`, resolved when they differ.
    pub async fn accept_remote(
        &self,
        pdu: Pdu,
        state_before: Option<Vec<OwnedEventId>>,
    ) -> Result<Outcome> {
        let (outcome, applied) = self.accept_remote_applied(pdu, state_before).await?;
        self.finish(applied).await?;
        Ok(outcome)
    }

    /// [`Rooms::accept_remote`] up to the point where the outcome is
    /// applied (visible to the room's next event) but perhaps not durable:
    /// a transaction's events are checked one after another without an
    /// fsync each, and [`Rooms::finish`]ed before the transaction is
    /// answered.
    pub async fn accept_remote_applied(
        &self,
        pdu: Pdu,
        state_before: Option<Vec<OwnedEventId>>,
    ) -> Result<(Outcome, Applied)> {
        let room_id = pdu.room_id.clone();
        let guard = self.lock_room(&room_id).await;
        if let Some(reason) = self.rejection(&pdu.event_id)? {
            return Ok((Outcome::Rejected(reason), Applied::nothing()));
        }
        if self.has_state_at(&pdu.event_id)? {
            return Ok((Outcome::AlreadyKnown, Applied::nothing()));
        }
        let Some(info) = self.room_info(&room_id)? else {
            return Err(Error::not_found("This server is not in the room"));
        };
        let rules = Self::rules(&info.version)?;
        let Some(shortroomid) = self.ids.room(&room_id)? else {
            return Err(Error::not_found("This server is not in the room"));
        };
        let mut in_flight = self.stream.begin();
        let mut batch = self.storage.batch();

        // 4. Auth events. Missing ones are not a verdict: nothing is stored
        // and the event can come again once they are found.
        let missing = self.unknown_auth_events(&pdu)?;
        if !missing.is_empty() {
            return Err(Error::new(
                axum::http::StatusCode::BAD_GATEWAY,
                ruma::api::error::ErrorKind::Unknown,
                format!("auth events not available: {missing:?}"),
            ));
        }
        if let Err(reason) = self.check_against_auth_events(&rules, &pdu) {
            let reason = format!("against its auth events: {reason}");
            return self.reject(batch, guard, in_flight, &pdu, reason).await;
        }

        // 5. The state before the event.
        let before: StateMap = match state_before {
            Some(ids) => self.state_map_of(&ids, &mut batch)?,
            None => {
                let mut states = Vec::with_capacity(pdu.prev_events.len());
                for prev in &pdu.prev_events {
                    let Some(prev_pdu) = self.get_pdu(prev)? else {
                        return Err(Error::internal(format!("prev event {prev} is not stored")));
                    };
                    states.push(self.state_snapshot_after(&prev_pdu)?);
                }
                self.resolve_states(&rules, &states, &[])?
            }
        };
        if let Err(reason) = auth::check_against_state(&rules, &pdu, |kind, key| {
            self.state_event_in(&before, kind, key).ok().flatten()
        }) {
            let reason = format!("against the state before it: {reason}");
            return self.reject(batch, guard, in_flight, &pdu, reason).await;
        }
        let current_snapshot = self.state.room_current(shortroomid)?;
        // Stored as a delta from the current state, which it usually equals
        // or is close to.
        let before_snapshot = self.state.save(current_snapshot, &before, &mut batch)?;
        let shorteventid = self.ids.event_or_create(&pdu.event_id, &mut batch)?;
        self.state
            .set_event_state_before(shorteventid, before_snapshot, &mut batch)?;
        let mut after = before.clone();
        let mut staged_key = 0;
        if let Some(state_key) = &pdu.state_key {
            let kind = StateEventType::from(pdu.kind.to_string());
            staged_key = self.ids.state_key_or_create(&kind, state_key, &mut batch)?;
            after.insert(staged_key, shorteventid);
        }
        batch.put(&self.pdus, &pdu.event_id, &pdu)?;

        // 6. The current state: failing it means soft failure.
        let current = match current_snapshot {
            Some(s) => self.state.load(s)?,
            None => Arc::new(StateMap::new()),
        };
        // When the state before the event is the current state (an event on
        // top of the only extremity, the common case), step 5 decided this.
        let same_state = current_snapshot == Some(before_snapshot);
        let soft_check = if same_state {
            Ok(())
        } else {
            auth::check_against_state(&rules, &pdu, |kind, key| {
                self.state_event_in(&current, kind, key).ok().flatten()
            })
        };
        if let Err(reason) = soft_check {
            let durable = self.storage.apply_holding(batch, guard).await?;
            tracing::info!(event_id = %pdu.event_id, %reason, "soft-failed a received event");
            let outcome = Outcome::SoftFailed(format!("against the current state: {reason}"));
            return Ok((outcome, Applied::stored(durable, in_flight)));
        }

        // Accepted: timeline, extremities, current state.
        let position = self.timeline.next_position();
        self.timeline
            .append(shortroomid, position, &pdu.event_id, &mut batch)?;
        self.index_relation(&mut batch, shortroomid, position, &pdu)?;
        self.apply_redaction(&mut batch, &rules, &pdu, &before)?;
        let old_extremities = self.extremities.get(&room_id)?.unwrap_or_default();
        let mut extremities: Vec<OwnedEventId> = old_extremities
            .into_iter()
            .filter(|e| !pdu.prev_events.contains(e) && *e != pdu.event_id)
            .collect();
        // An event older than the extremities does not replace them, but
        // joins them: the next event must reference this branch too.
        extremities.push(pdu.event_id.clone());
        let mut states = vec![Arc::new(after.clone())];
        for other in extremities.iter().filter(|e| **e != pdu.event_id) {
            if let Some(other) = self.get_pdu(other)? {
                states.push(self.state_snapshot_after(&other)?);
            }
        }
        let new_current = if states.len() == 1 {
            after
        } else {
            self.resolve_states(&rules, &states, &[(staged_key, shorteventid, &pdu)])?
        };
        let changed = self.set_current_state(
            &mut batch,
            &room_id,
            shortroomid,
            current_snapshot,
            &current,
            &new_current,
            &[(staged_key, shorteventid, &pdu)],
        )?;
        batch.put(&self.extremities, &room_id, &extremities)?;
        let durable = self.apply_event(batch, guard, &pdu).await?;
        in_flight.changed(Some(room_id), changed);
        let applied = Applied {
            durable: Some(durable),
            accepted: Some(pdu),
            in_flight: Some(in_flight),
        };
        Ok((Outcome::Accepted, applied))
    }

    /// Waits until an [`Applied`] outcome is durable, then tells the event
    /// hooks of an accepted event and lets `/sync` see it.
    pub async fn finish(&self, applied: Applied) -> Result<()> {
        if let Some(durable) = applied.durable {
            durable.wait().await?;
        }
        if let Some(pdu) = &applied.accepted {
            let hooks = self.event_hooks.read().clone();
            for hook in hooks {
                hook.committed(self, pdu).await;
            }
        }
        if let Some(in_flight) = applied.in_flight {
            in_flight.done();
        }
        Ok(())
    }

    async fn reject(
        &self,
        mut batch: crate::storage::Batch,
        guard: tokio::sync::OwnedMutexGuard<()>,
        in_flight: InFlight,
        pdu: &Pdu,
        reason: String,
    ) -> Result<(Outcome, Applied)> {
        tracing::info!(event_id = %pdu.event_id, %reason, "rejected a received event");
        batch.put(&self.rejected, &pdu.event_id, &reason)?;
        let durable = self.storage.apply_holding(batch, guard).await?;
        Ok((
            Outcome::Rejected(reason),
            Applied::stored(durable, in_flight),
        ))
    }

    /// Short-id state of stored events (outliers included), interning
    /// what is new into `batch`. Events we do not hold are left out.
    fn state_map_of(
        &self,
        event_ids: &[OwnedEventId],
        batch: &mut crate::storage::Batch,
    ) -> Result<StateMap> {
        let mut map = StateMap::new();
        for id in event_ids {
            let Some(pdu) = self.get_pdu(id)? else {
                continue;
            };
            let Some(state_key) = &pdu.state_key else {
                continue;
            };
            let kind = StateEventType::from(pdu.kind.to_string());
            let key = self.ids.state_key_or_create(&kind, state_key, batch)?;
            let event = self.ids.event_or_create(id, batch)?;
            map.insert(key, event);
        }
        Ok(map)
    }

    /// Makes `new` the room's current state: saves it, and re-indexes the
    /// memberships that differ from `old`. `staged` names the events of this
    /// batch (short state key, short event id, event), whose ids are not
    /// committed yet. Returns the users whose membership changed (their
    /// syncs must learn of the room).
    #[allow(clippy::too_many_arguments)]
    fn set_current_state(
        &self,
        batch: &mut crate::storage::Batch,
        room_id: &RoomId,
        shortroomid: u64,
        old_snapshot: Option<u64>,
        old: &StateMap,
        new: &StateMap,
        staged: &[(u64, u64, &Pdu)],
    ) -> Result<Vec<OwnedUserId>> {
        let snapshot = self.state.save(old_snapshot, new, batch)?;
        self.state.set_room_current(shortroomid, snapshot, batch)?;
        let mut changed = Vec::new();
        let mut keys: Vec<u64> = new
            .iter()
            .filter(|(k, v)| old.get(k) != Some(v))
            .map(|(k, _)| *k)
            .collect();
        keys.extend(old.keys().filter(|k| !new.contains_key(k)));
        for key in keys {
            let event = new.get(&key).copied();
            if let Some((_, _, pdu)) = staged
                .iter()
                .find(|(k, e, _)| *k == key && Some(*e) == event)
            {
                if pdu.kind == TimelineEventType::RoomMember {
                    self.index_membership(batch, room_id, pdu)?;
                    if let Some(user) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
                    {
                        changed.push(user);
                    }
                }
                continue;
            }
            let Some((kind, state_key)) = self.ids.state_key_of(key)? else {
                continue;
            };
            if kind != StateEventType::RoomMember {
                continue;
            }
            let Ok(user_id) = UserId::parse(state_key.as_str()) else {
                continue;
            };
            let member = match event {
                Some(short) => match self.ids.event_id(short)? {
                    Some(id) => self.get_pdu(&id)?,
                    None => None,
                },
                None => None,
            };
            match member {
                Some(member) => self.index_membership(batch, room_id, &member)?,
                None => {
                    batch.delete(
                        &self.user_memberships,
                        &(user_id.clone(), room_id.to_owned()),
                    );
                    batch.delete(
                        &self.room_memberships,
                        &(room_id.to_owned(), user_id.clone()),
                    );
                }
            }
            changed.push(user_id);
        }
        Ok(changed)
    }

    /// Completes a join through a resident server (Server-Server API
    /// "Joining Rooms"): `state` is the room state before `join` (from
    /// `send_join`), its events and their auth chain already stored as
    /// outliers with [`Rooms::store_outlier`]. Our join event is checked
    /// against that state and becomes the room's first timeline event here.
    pub async fn complete_remote_join(
        &self,
        version: &RoomVersionId,
        join: Pdu,
        state: &[OwnedEventId],
    ) -> Result<()> {
        let room_id = join.room_id.clone();
        let rules = Self::rules(version)?;
        let guard = self.lock_room(&room_id).await;
        let mut in_flight = self.stream.begin();
        let mut batch = self.storage.batch();
        let shortroomid = self.ids.room_or_create(&room_id, &mut batch)?;
        // State events the auth rules rejected are not part of the state.
        let mut usable = Vec::with_capacity(state.len());
        for id in state {
            if self.rejection(id)?.is_none() {
                usable.push(id.clone());
            }
        }
        let before = self.state_map_of(&usable, &mut batch)?;
        let has_create = self
            .state_event_in(&before, &StateEventType::RoomCreate, "")?
            .is_some();
        if !has_create {
            return Err(Error::new(
                axum::http::StatusCode::BAD_GATEWAY,
                ruma::api::error::ErrorKind::Unknown,
                "The resident server's room state has no create event",
            ));
        }
        auth::check(
            &rules,
            &join,
            |id| self.get_pdu(id).ok().flatten(),
            |kind, key| self.state_event_in(&before, kind, key).ok().flatten(),
        )
        .map_err(|e| Error::forbidden(format!("Our join event fails the room's rules: {e}")))?;

        let old_snapshot = self.state.room_current(shortroomid)?;
        let old = match old_snapshot {
            Some(s) => self.state.load(s)?,
            None => Arc::new(StateMap::new()),
        };
        let before_snapshot = self.state.save(old_snapshot, &before, &mut batch)?;
        let shorteventid = self.ids.event_or_create(&join.event_id, &mut batch)?;
        self.state
            .set_event_state_before(shorteventid, before_snapshot, &mut batch)?;
        let kind = StateEventType::RoomMember;
        let key = self
            .ids
            .state_key_or_create(&kind, join.sender.as_str(), &mut batch)?;
        let mut after = before.clone();
        after.insert(key, shorteventid);
        batch.put(&self.pdus, &join.event_id, &join)?;
        batch.put(
            &self.infos,
            &room_id,
            &RoomInfo {
                version: version.clone(),
            },
        )?;
        let position = self.timeline.next_position();
        self.timeline
            .append(shortroomid, position, &join.event_id, &mut batch)?;
        // Index every membership of the joined state (as if all changed).
        let mut changed = self.set_current_state(
            &mut batch,
            &room_id,
            shortroomid,
            old_snapshot,
            &StateMap::new(),
            &after,
            &[(key, shorteventid, &join)],
        )?;
        // Members we knew from before (e.g. an invite) but the state lacks.
        for (key, _) in old.iter().filter(|(k, _)| !after.contains_key(k)) {
            if let Some((kind, state_key)) = self.ids.state_key_of(*key)? {
                if kind == StateEventType::RoomMember {
                    if let Ok(user_id) = UserId::parse(state_key.as_str()) {
                        batch.delete(&self.user_memberships, &(user_id.clone(), room_id.clone()));
                        batch.delete(&self.room_memberships, &(room_id.clone(), user_id.clone()));
                        changed.push(user_id);
                    }
                }
            }
        }
        batch.put(&self.extremities, &room_id, &vec![join.event_id.clone()])?;
        self.storage
            .apply_holding(batch, guard)
            .await?
            .wait()
            .await?;
        let hooks = self.event_hooks.read().clone();
        for hook in hooks {
            hook.committed(self, &join).await;
        }
        in_flight.changed(Some(room_id), changed);
        in_flight.done();
        Ok(())
    }

    /// Records a membership of a local user in a room this server is not
    /// in: an invite received over federation (with the `stripped` state it
    /// came with), or our own leave sent through a resident server (an
    /// invite rejected). The event enters the room's timeline here, so the
    /// user's `/sync` shows it, and the user's membership index follows it;
    /// the room's real state arrives only with a join.
    pub async fn record_outside_membership(
        &self,
        version: &RoomVersionId,
        pdu: Pdu,
        stripped: Option<Vec<serde_json::Value>>,
    ) -> Result<()> {
        let room_id = pdu.room_id.clone();
        let Some(state_key) = pdu.state_key.clone() else {
            return Err(Error::bad_json("A membership event needs a state key"));
        };
        let guard = self.lock_room(&room_id).await;
        if self.has_state_at(&pdu.event_id)? {
            return Ok(());
        }
        let mut in_flight = self.stream.begin();
        let mut batch = self.storage.batch();
        let shortroomid = self.ids.room_or_create(&room_id, &mut batch)?;
        if self.room_info(&room_id)?.is_none() {
            batch.put(
                &self.infos,
                &room_id,
                &RoomInfo {
                    version: version.clone(),
                },
            )?;
        }
        let old_snapshot = self.state.room_current(shortroomid)?;
        let old = match old_snapshot {
            Some(s) => self.state.load(s)?,
            None => Arc::new(StateMap::new()),
        };
        let shorteventid = self.ids.event_or_create(&pdu.event_id, &mut batch)?;
        let before_snapshot = self.state.save(old_snapshot, &old, &mut batch)?;
        self.state
            .set_event_state_before(shorteventid, before_snapshot, &mut batch)?;
        let key =
            self.ids
                .state_key_or_create(&StateEventType::RoomMember, &state_key, &mut batch)?;
        let mut new = (*old).clone();
        new.insert(key, shorteventid);
        batch.put(&self.pdus, &pdu.event_id, &pdu)?;
        if let Some(stripped) = stripped {
            batch.put(&self.invite_state, &pdu.event_id, &stripped)?;
        }
        let position = self.timeline.next_position();
        self.timeline
            .append(shortroomid, position, &pdu.event_id, &mut batch)?;
        let changed = self.set_current_state(
            &mut batch,
            &room_id,
            shortroomid,
            old_snapshot,
            &old,
            &new,
            &[(key, shorteventid, &pdu)],
        )?;
        self.storage
            .apply_holding(batch, guard)
            .await?
            .wait()
            .await?;
        in_flight.changed(Some(room_id), changed);
        in_flight.done();
        Ok(())
    }

    /// The stripped state an invite from another server came with.
    pub fn invite_state(&self, event_id: &EventId) -> Result<Option<Vec<serde_json::Value>>> {
        Ok(self.invite_state.get(&event_id.to_owned())?)
    }

    /// Whether this server takes part in the room: a local user is joined.
    pub fn participates(&self, room_id: &RoomId) -> Result<bool> {
        self.server_in_room(&self.server_name.clone(), room_id)
    }

    /// The servers with a joined member in the room now (ours included):
    /// where the room's new events go.
    pub fn servers_in_room(&self, room_id: &RoomId) -> Result<Vec<OwnedServerName>> {
        let mut servers: Vec<OwnedServerName> = Vec::new();
        for (user_id, membership) in self.members(room_id)? {
            if membership == Membership::Join && !servers.iter().any(|s| s == user_id.server_name())
            {
                servers.push(user_id.server_name().to_owned());
            }
        }
        Ok(servers)
    }

    /// Whether `server` has a member joined to the room now.
    pub fn server_in_room(&self, server: &ruma::ServerName, room_id: &RoomId) -> Result<bool> {
        Ok(self
            .members(room_id)?
            .iter()
            .any(|(user, m)| *m == Membership::Join && user.server_name() == server))
    }
}
