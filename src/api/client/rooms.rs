//! Room handlers: creation, sending, state, reading (Client-Server API:
//! "Rooms", "Events", "Room membership").

use axum::extract::State;
use ruma::{
    api::client::{
        message::{get_message_events, send_message_event},
        room::{create_room, get_room_event, upgrade_room},
        state::{get_state_event_for_key, get_state_events, send_state_event},
    },
    events::TimelineEventType,
    serde::Raw,
    OwnedUserId, UInt,
};
use serde_json::{Map, Value};

use crate::{
    accounts::Session,
    api::ruma::Ruma,
    error::{Error, Result},
    rooms::{self, CreateRoom, Direction, MemberProfile, NewEvent, Pdu, Preset, Txn},
    AppState,
};

/// A local user's profile as their membership events carry it.
pub(super) fn member_profile(state: &AppState, user_id: &OwnedUserId) -> MemberProfile {
    let profile = state.accounts.profile(user_id).unwrap_or_default();
    let text = |key: &str| profile.get(key).and_then(Value::as_str).map(str::to_owned);
    MemberProfile {
        displayname: text("displayname"),
        avatar_url: text("avatar_url"),
    }
}

pub(super) fn raw<T>(value: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("event not serialisable: {e}")))
}

fn object(raw_json: &str, what: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(raw_json) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::bad_json(format!("{what} must be a JSON object"))),
    }
}

pub async fn create(
    State(state): State<AppState>,
    request: Ruma<create_room::v3::Request>,
) -> Result<create_room::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    // Claimed before the room exists: 400 M_INVALID_PARAM / M_ROOM_IN_USE.
    let alias = body
        .room_alias_name
        .as_deref()
        .map(|localpart| state.directory.reserve_for_new_room(localpart))
        .transpose()?;
    let publish = body.visibility == ruma::api::client::room::Visibility::Public;
    let preset = match body.preset {
        Some(create_room::v3::RoomPreset::PublicChat) => Preset::PublicChat,
        Some(create_room::v3::RoomPreset::TrustedPrivateChat) => Preset::TrustedPrivateChat,
        Some(create_room::v3::RoomPreset::PrivateChat) => Preset::PrivateChat,
        Some(_) => return Err(Error::bad_json("Unknown preset")),
        None if body.visibility == ruma::api::client::room::Visibility::Public => {
            Preset::PublicChat
        }
        None => Preset::PrivateChat,
    };
    let creation_content = match &body.creation_content {
        Some(raw) => object(raw.json().get(), "creation_content")?,
        None => Map::new(),
    };
    let power_level_override = match &body.power_level_content_override {
        Some(raw) => Some(object(raw.json().get(), "power_level_content_override")?),
        None => None,
    };
    let mut initial_state = Vec::new();
    for event in &body.initial_state {
        let map = object(event.json().get(), "initial_state events")?;
        let kind = map
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("initial_state event without type"))?;
        let state_key = map
            .get("state_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let content = map
            .get("content")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        initial_state.push((kind.to_owned(), state_key.to_owned(), content));
    }
    // Other servers' users are invited over federation once the room exists.
    let (invite, remote_invites): (Vec<_>, Vec<_>) = body
        .invite
        .into_iter()
        .partition(|user| state.accounts.is_local(user));
    let options = CreateRoom {
        version: body.room_version,
        preset,
        creation_content,
        power_level_override,
        initial_state,
        name: body.name,
        topic: body.topic,
        invite,
        is_direct: body.is_direct,
        creator_profile: member_profile(&state, &session.user_id),
        canonical_alias: alias.as_ref().map(|a| a.alias().to_owned()),
    };
    let room_id = state.rooms.create_room(&session.user_id, options).await?;
    if let Some(alias) = alias {
        alias.commit(&room_id, &session.user_id).await?;
    }
    if publish {
        state.directory.set_published(&room_id, true).await?;
    }
    for invitee in &remote_invites {
        super::membership::invite_remote_user(
            &state,
            &room_id,
            &session.user_id,
            invitee,
            None,
            body.is_direct,
        )
        .await?;
    }
    Ok(create_room::v3::Response::new(room_id))
}

pub async fn send_message(
    State(state): State<AppState>,
    request: Ruma<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response> {
    let session: &Session = request.session()?;
    let body = &request.body;
    object(body.body.json().get(), "Event content")?;
    let event = NewEvent {
        kind: TimelineEventType::from(body.event_type.to_string()),
        state_key: None,
        content: body.body.json().to_owned(),
        redacts: None,
    };
    let txn = Txn {
        user_id: &session.user_id,
        device_id: &session.device_id,
        txn_id: body.txn_id.as_str(),
    };
    let event_id = state
        .rooms
        .send(&body.room_id, &session.user_id, event, Some(txn))
        .await?;
    state.presence.active(&session.user_id);
    Ok(send_message_event::v3::Response::new(event_id))
}

pub async fn send_state(
    State(state): State<AppState>,
    request: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    object(body.body.json().get(), "State content")?;
    if body.event_type == ruma::events::StateEventType::RoomCanonicalAlias
        && body.state_key.is_empty()
    {
        state
            .directory
            .check_canonical_alias(&state.rooms, &body.room_id, body.body.json())?;
    }
    let event = NewEvent {
        kind: TimelineEventType::from(body.event_type.to_string()),
        state_key: Some(body.state_key.clone()),
        content: body.body.json().to_owned(),
        redacts: None,
    };
    let event_id = state
        .rooms
        .send(&body.room_id, &session.user_id, event, None)
        .await?;
    Ok(send_state_event::v3::Response::new(event_id))
}

pub async fn get_state_event(
    State(state): State<AppState>,
    request: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let events = state.rooms.state_for(&session.user_id, &body.room_id)?;
    let found = events.into_iter().find(|pdu| {
        pdu.kind.to_string() == body.event_type.to_string()
            && pdu.state_key.as_deref() == Some(body.state_key.as_str())
    });
    let Some(pdu) = found else {
        return Err(Error::not_found("No such state event"));
    };
    let value = match body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => pdu.to_client_event(),
        _ => serde_json::from_str(pdu.content.get())
            .map_err(|e| Error::internal(format!("stored content unreadable: {e}")))?,
    };
    let raw =
        serde_json::value::to_raw_value(&value).map_err(|e| Error::internal(format!("{e}")))?;
    Ok(get_state_event_for_key::v3::Response::new(raw))
}

pub async fn get_state(
    State(state): State<AppState>,
    request: Ruma<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response> {
    let session = request.session()?;
    let events = state
        .rooms
        .state_for(&session.user_id, &request.body.room_id)?;
    let raws = events
        .iter()
        .map(|e| raw(&e.to_client_event()))
        .collect::<Result<_>>()?;
    Ok(get_state_events::v3::Response::new(raws))
}

pub async fn get_event(
    State(state): State<AppState>,
    request: Ruma<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let pdu = state
        .rooms
        .visible_event(&session.user_id, &body.room_id, &body.event_id)?;
    Ok(get_room_event::v3::Response::new(raw(
        &pdu.to_client_event()
    )?))
}

/// `/messages`. Tokens are stream positions; without `from`, backward
/// pagination starts at the newest event and forward at the oldest.
pub async fn messages(
    State(state): State<AppState>,
    request: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let dir = match body.dir {
        ruma::api::Direction::Forward => Direction::Forward,
        ruma::api::Direction::Backward => Direction::Backward,
    };
    let limit = usize::try_from(body.limit.min(UInt::from(1000u32))).unwrap_or(1000);
    // A `b<n>` token points into the history fetched from other servers.
    if let Some(seq) = body.from.as_deref().and_then(history_token) {
        if dir == Direction::Forward {
            return Err(Error::invalid_param(
                "Paginating forwards from a history token is not supported",
            ));
        }
        let (events, end) = history(
            &state,
            &session.user_id,
            &body.room_id,
            seq,
            limit,
            &body.filter,
        )
        .await?;
        let start = body.from.clone().unwrap_or_default();
        return messages_response(&state, body, events, start, end);
    }
    let from = match &body.from {
        Some(token) => Some(
            rooms::parse_token(token)
                .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token {token}")))?,
        ),
        None => None,
    };
    let to = match &body.to {
        Some(token) => Some(
            rooms::parse_token(token)
                .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token {token}")))?,
        ),
        None => None,
    };
    let page = state.rooms.messages(
        &session.user_id,
        &body.room_id,
        from,
        dir,
        limit,
        &body.filter,
    )?;
    let mut events: Vec<Pdu> = page.events;
    let mut end = page.end.map(rooms::make_token);
    if let Some(to) = to {
        let before_to = |p: u64| match dir {
            Direction::Forward => p <= to,
            Direction::Backward => p > to,
        };
        let mut kept = Vec::new();
        for pdu in events {
            match state.rooms.position_of(&pdu.event_id)? {
                Some(p) if before_to(p) => kept.push(pdu),
                _ => {
                    end = None;
                    break;
                }
            }
        }
        events = kept;
    } else if dir == Direction::Backward && end.is_none() && state.federation.is_some() {
        // The start of our timeline: older history may be on other servers.
        let (older, history_end) = history(
            &state,
            &session.user_id,
            &body.room_id,
            0,
            limit - events.len(),
            &body.filter,
        )
        .await?;
        events.extend(older);
        end = history_end;
    }
    let start = match from {
        Some(p) => rooms::make_token(p),
        None => rooms::make_token(match dir {
            Direction::Forward => 0,
            Direction::Backward => state.rooms.current_position(),
        }),
    };
    messages_response(&state, body, events, start, end)
}

/// `b<n>`: a position in the history fetched from other servers.
fn history_token(token: &str) -> Option<u64> {
    token.strip_prefix('b')?.parse().ok()
}

/// Up to `limit` events of the room's fetched history from `seq` on,
/// fetching more from other servers (`backfill`) when what is stored runs
/// out. Returns the events and the `end` token (`None`: nothing older).
async fn history(
    state: &AppState,
    user_id: &ruma::UserId,
    room_id: &ruma::RoomId,
    seq: u64,
    limit: usize,
    filter: &ruma::api::client::filter::RoomEventFilter,
) -> Result<(Vec<Pdu>, Option<String>)> {
    let mut events = Vec::new();
    let mut seq = seq;
    if limit == 0 {
        return Ok((events, Some(format!("b{seq}"))));
    }
    // Two fetches at most per request: a filter matching little must not
    // turn one request into a walk through the whole room.
    for round in 0..3 {
        let page = state
            .rooms
            .history_page(user_id, room_id, seq, limit - events.len(), filter)?;
        events.extend(page.events);
        let Some(next) = page.next else {
            return Ok((events, None));
        };
        seq = next;
        if events.len() >= limit || round == 2 {
            return Ok((events, Some(format!("b{seq}"))));
        }
        let Some(federation) = &state.federation else {
            return Ok((events, None));
        };
        let wanted = u32::try_from(limit - events.len())
            .unwrap_or(100)
            .clamp(10, 100);
        if federation.backfill(&state.rooms, room_id, wanted).await? == 0 {
            return Ok((events, None));
        }
    }
    Ok((events, Some(format!("b{seq}"))))
}

fn messages_response(
    state: &AppState,
    body: &get_message_events::v3::Request,
    events: Vec<Pdu>,
    start: String,
    end: Option<String>,
) -> Result<get_message_events::v3::Response> {
    let mut response = get_message_events::v3::Response::new();
    response.start = start;
    response.end = end;
    if !body.filter.lazy_load_options.is_disabled() {
        let mut senders: Vec<&ruma::UserId> = Vec::new();
        for pdu in &events {
            if !senders.contains(&pdu.sender.as_ref()) {
                senders.push(&pdu.sender);
            }
        }
        let members = state.rooms.member_events(&body.room_id, &senders)?;
        response.state = members
            .iter()
            .map(|e| raw(&e.to_client_event()))
            .collect::<Result<_>>()?;
    }
    response.chunk = events
        .iter()
        .map(|e| raw(&e.to_client_event()))
        .collect::<Result<_>>()?;
    Ok(response)
}

/// `POST /rooms/{roomId}/upgrade`.
pub async fn upgrade(
    State(state): State<AppState>,
    request: Ruma<upgrade_room::v3::Request>,
) -> Result<upgrade_room::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    let upgrade = rooms::Upgrade {
        new_version: body.new_version,
        additional_creators: body.additional_creators,
        profile: member_profile(&state, &session.user_id),
    };
    let new_room = state
        .rooms
        .upgrade_room(&body.room_id, &session.user_id, upgrade)
        .await?;
    state
        .directory
        .follow_upgrade(&state.rooms, &body.room_id, &new_room, &session.user_id)
        .await?;
    Ok(upgrade_room::v3::Response::new(new_room))
}
