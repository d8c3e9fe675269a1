//! State resolution across forks of the DAG (room versions 2+ "State
//! resolution", v2.1 from room version 12), through ruma's `state_res::resolve`.
//!
//! Used when the states of several forward extremities (or of several
//! `prev_events` of a received event) differ. The DAG walks ruma needs, the
//! full auth chain of each state and (v2.1) the conflicted state subgraph,
//! are done here over the stored PDUs.

use std::collections::{HashMap, HashSet};

use ruma::{events::StateEventType, room_version_rules::RoomVersionRules, state_res, OwnedEventId};

use super::{Rooms, StateMap};
use crate::error::{Error, Result};

type IdStateMap = state_res::StateMap<OwnedEventId>;

impl Rooms {
    /// Resolves `states` (short-id snapshots) into one. States that are all
    /// equal resolve to themselves without touching the DAG. `staged` names
    /// events of the batch being built (short state key, short event id,
    /// event): their ids are not committed, so they are looked up here.
    pub(super) fn resolve_states(
        &self,
        rules: &RoomVersionRules,
        states: &[std::sync::Arc<StateMap>],
        staged: &[(u64, u64, &super::Pdu)],
    ) -> Result<StateMap> {
        let Some(first) = states.first() else {
            return Ok(StateMap::new());
        };
        if states.iter().all(|s| s == first) {
            return Ok((**first).clone());
        }
        let Some(v2) = rules.state_res.v2_rules() else {
            return Err(Error::internal("room version without state resolution v2"));
        };
        let mut maps: Vec<IdStateMap> = Vec::with_capacity(states.len());
        for state in states {
            let mut map = IdStateMap::new();
            for (&key, &event) in state.iter() {
                if let Some((_, _, pdu)) = staged.iter().find(|(k, e, _)| *k == key && *e == event)
                {
                    let kind = StateEventType::from(pdu.kind.to_string());
                    let state_key = pdu.state_key.clone().unwrap_or_default();
                    map.insert((kind, state_key), pdu.event_id.clone());
                    continue;
                }
                match (self.ids.state_key_of(key)?, self.ids.event_id(event)?) {
                    (Some(k), Some(e)) => {
                        map.insert(k, e);
                    }
                    _ => {
                        return Err(Error::internal(
                            "state snapshot refers to unknown short ids",
                        ))
                    }
                }
            }
            maps.push(map);
        }
        let mut auth_chains = Vec::with_capacity(maps.len());
        for map in &maps {
            let mut chain = HashSet::new();
            for id in map.values() {
                match staged.iter().find(|(_, _, p)| &p.event_id == id) {
                    Some((_, _, pdu)) => {
                        chain.extend(pdu.auth_events.iter().cloned());
                        chain.extend(self.auth_chain_ids(pdu.auth_events.iter().cloned())?);
                    }
                    None => chain.extend(self.auth_chain_ids([id.clone()])?),
                }
            }
            auth_chains.push(chain.into_iter().collect());
        }
        let fetch = |id: &ruma::EventId| match staged.iter().find(|(_, _, p)| p.event_id == id) {
            Some((_, _, pdu)) => Some((*pdu).clone()),
            None => self.get_pdu(id).ok().flatten(),
        };
        let resolved = state_res::resolve(
            &rules.authorization,
            v2,
            maps.iter(),
            auth_chains,
            fetch,
            |conflicted| Some(self.conflicted_subgraph(conflicted).into_iter().collect()),
        )
        .map_err(|e| Error::internal(format!("state resolution failed: {e}")))?;
        self.short_state_map(resolved.iter(), staged)
    }

    /// `(type, state_key) → event id` pairs as a short-id map; every event
    /// and key must already be interned (they come from stored states).
    fn short_state_map<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a (StateEventType, String), &'a OwnedEventId)>,
        staged: &[(u64, u64, &super::Pdu)],
    ) -> Result<StateMap> {
        let mut out = StateMap::new();
        for ((kind, state_key), event_id) in pairs {
            if let Some((key, event, _)) = staged.iter().find(|(_, _, p)| &p.event_id == event_id) {
                out.insert(*key, *event);
                continue;
            }
            let key = self.ids.state_key(kind, state_key)?;
            let event = self.ids.event(event_id)?;
            match (key, event) {
                (Some(key), Some(event)) => {
                    out.insert(key, event);
                }
                _ => return Err(Error::internal("resolved state names unknown ids")),
            }
        }
        Ok(out)
    }

    /// Every event reachable from `start` through `auth_events`, `start`
    /// excluded unless reached again. Events we do not hold are skipped
    /// (state resolution then treats them as absent).
    pub fn auth_chain_ids(
        &self,
        start: impl IntoIterator<Item = OwnedEventId>,
    ) -> Result<HashSet<OwnedEventId>> {
        let mut seen = HashSet::new();
        let mut todo: Vec<OwnedEventId> = Vec::new();
        for id in start {
            if let Some(pdu) = self.get_pdu(&id)? {
                todo.extend(pdu.auth_events);
            }
        }
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(pdu) = self.get_pdu(&id)? {
                todo.extend(pdu.auth_events.into_iter().filter(|a| !seen.contains(a)));
            }
        }
        Ok(seen)
    }

    /// The conflicted state subgraph (room version 12, state resolution
    /// v2.1): events that lie on an `auth_events` path from one conflicted
    /// event to another, the conflicted events included.
    fn conflicted_subgraph(
        &self,
        conflicted: &state_res::StateMap<Vec<OwnedEventId>>,
    ) -> HashSet<OwnedEventId> {
        let targets: HashSet<OwnedEventId> = conflicted.values().flatten().cloned().collect();
        // reaches[e]: some conflicted event is e or among e's auth ancestors.
        let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
        for start in &targets {
            self.reaches_conflicted(start, &targets, &mut reaches);
        }
        reaches
            .into_iter()
            .filter_map(|(id, reaches)| reaches.then_some(id))
            .collect()
    }

    /// Depth-first over `auth_events` with an explicit stack (auth chains
    /// can be long): fills `memo` for `start` and everything below it.
    fn reaches_conflicted(
        &self,
        start: &OwnedEventId,
        targets: &HashSet<OwnedEventId>,
        memo: &mut HashMap<OwnedEventId, bool>,
    ) -> bool {
        if let Some(&known) = memo.get(start) {
            return known;
        }
        // (event, its auth events, expanded?)
        let mut stack: Vec<(OwnedEventId, Vec<OwnedEventId>, bool)> = Vec::new();
        let auth_of = |id: &OwnedEventId| {
            self.get_pdu(id)
                .ok()
                .flatten()
                .map(|pdu| pdu.auth_events)
                .unwrap_or_default()
        };
        stack.push((start.clone(), auth_of(start), false));
        // Marks nodes on the stack so a malformed cycle cannot loop forever.
        memo.insert(start.clone(), targets.contains(start));
        while let Some((id, auth, expanded)) = stack.pop() {
            if !expanded {
                stack.push((id, auth.clone(), true));
                for next in auth {
                    if !memo.contains_key(&next) {
                        memo.insert(next.clone(), targets.contains(&next));
                        let below = auth_of(&next);
                        stack.push((next, below, false));
                    }
                }
            } else {
                let any = targets.contains(&id) || auth.iter().any(|a| memo.get(a) == Some(&true));
                memo.insert(id, any);
            }
        }
        memo.get(start).copied().unwrap_or(false)
    }
}
