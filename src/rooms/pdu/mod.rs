//! The room event as stored and exchanged: a signed PDU plus the fields the
//! server reads from it (Server-Server API "PDUs"; room versions' "Event
//! format"), and the builder for new local PDUs.
//!
//! Hashing, signing and event ids are `feathur_federation`'s (over ruma);
//! this module only shapes and parses the JSON.

use ruma::{
    events::TimelineEventType, room_version_rules::RoomVersionRules, CanonicalJsonObject,
    CanonicalJsonValue, EventId, Int, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue as RawJsonValue, Map, Value};

/// A room event: the signed PDU (`json`) and the fields read from it.
///
/// Stored as `{"event_id", "room_id", "json", "unsigned"?}` (see the
/// `Serialize` impl): `json` is kept byte-for-byte as signed, everything else
/// is re-derived from it on load, so the parsed fields can never drift from
/// the signed event.
#[derive(Clone, Debug)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// The room, also for v12 create events whose PDU has no `room_id`.
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Box<RawJsonValue>,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
    /// The redacted event, from top-level `redacts` (v1–v10) or
    /// `content.redacts` (v11+, room version 11 "Redactions").
    pub redacts: Option<OwnedEventId>,
    /// Client-facing unsigned data this server computes (`age`,
    /// `transaction_id`, `prev_content`, `redacted_because`). Never taken
    /// from the PDU: a remote server's `unsigned` is not signed, so trusting
    /// it would let it forge e.g. `redacted_because`.
    pub unsigned: Option<Map<String, Value>>,
    /// The full signed PDU as stored and sent over federation (no `event_id`
    /// in v3+ rooms; no `room_id` for a v12 create event). Shared: a
    /// cached event is cloned on every read, and this is its bulk.
    pub json: std::sync::Arc<CanonicalJsonObject>,
}

/// Why a PDU's JSON could not be read as a [`Pdu`].
#[derive(Debug, thiserror::Error)]
pub enum PduParseError {
    #[error("missing `{0}` field")]
    Missing(&'static str),
    #[error("invalid `{field}` field: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("`room_id` {found} does not match the room {expected}")]
    RoomMismatch {
        expected: OwnedRoomId,
        found: String,
    },
    #[error("`event_id` {found} does not match {expected}")]
    EventIdMismatch {
        expected: OwnedEventId,
        found: String,
    },
}

fn invalid(field: &'static str, reason: impl ToString) -> PduParseError {
    PduParseError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

impl Pdu {
    /// Reads a signed PDU. `room_id` is the room it was received or built
    /// for: a v12 create event carries none (room version 12, "Event
    /// format"), and any `room_id` the PDU does carry must equal it.
    ///
    /// `redacts` comes from the top level or `content.redacts`; a PDU with
    /// both set to different events is refused rather than guessed at.
    pub fn from_json(
        event_id: OwnedEventId,
        room_id: &RoomId,
        json: impl Into<std::sync::Arc<CanonicalJsonObject>>,
    ) -> Result<Pdu, PduParseError> {
        let json: std::sync::Arc<CanonicalJsonObject> = json.into();
        let kind = TimelineEventType::from(required_str(&json, "type")?);
        match json.get("room_id") {
            Some(CanonicalJsonValue::String(found)) if found == room_id.as_str() => {}
            Some(CanonicalJsonValue::String(found)) => {
                return Err(PduParseError::RoomMismatch {
                    expected: room_id.to_owned(),
                    found: found.clone(),
                })
            }
            Some(_) => return Err(invalid("room_id", "not a string")),
            None if kind == TimelineEventType::RoomCreate => {}
            None => return Err(PduParseError::Missing("room_id")),
        }
        if let Some(found) = json.get("event_id") {
            if found.as_str() != Some(event_id.as_str()) {
                return Err(PduParseError::EventIdMismatch {
                    expected: event_id,
                    found: format!("{found:?}"),
                });
            }
        }
        let sender =
            UserId::parse(required_str(&json, "sender")?).map_err(|e| invalid("sender", e))?;
        let state_key = match json.get("state_key") {
            None => None,
            Some(CanonicalJsonValue::String(key)) => Some(key.clone()),
            Some(_) => return Err(invalid("state_key", "not a string")),
        };
        let content_value = match json.get("content") {
            Some(value @ CanonicalJsonValue::Object(_)) => value,
            Some(_) => return Err(invalid("content", "not an object")),
            None => return Err(PduParseError::Missing("content")),
        };
        let content =
            serde_json::value::to_raw_value(content_value).map_err(|e| invalid("content", e))?;
        let origin_server_ts = UInt::new(required_u64(&json, "origin_server_ts")?)
            .map(MilliSecondsSinceUnixEpoch)
            .ok_or_else(|| invalid("origin_server_ts", "out of range"))?;
        let redacts = redacts(&json)?;
        Ok(Pdu {
            prev_events: event_ids(&json, "prev_events")?,
            auth_events: event_ids(&json, "auth_events")?,
            depth: required_u64(&json, "depth")?,
            event_id,
            room_id: room_id.to_owned(),
            sender,
            kind,
            state_key,
            content,
            origin_server_ts,
            redacts,
            unsigned: None,
            json,
        })
    }

    /// A state event has a `state_key`, even an empty one.
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// Whether a redaction has been applied to the stored event: it then
    /// carries `unsigned.redacted_because` (Client-Server API "Redactions").
    pub fn is_redacted(&self) -> bool {
        self.unsigned
            .as_ref()
            .is_some_and(|unsigned| unsigned.contains_key("redacted_because"))
    }

    fn content_value(&self) -> Value {
        serde_json::from_str(self.content.get()).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// The event in the Client-Server API's `ClientEvent` format. `redacts`
    /// is also given at the top level in v11+ rooms (where it lives in
    /// `content`), as clients written for older versions read it there.
    pub fn to_client_event(&self) -> Value {
        let mut event = serde_json::json!({
            "content": self.content_value(),
            "event_id": self.event_id,
            "origin_server_ts": self.origin_server_ts,
            "room_id": self.room_id,
            "sender": self.sender,
            "type": self.kind.to_string(),
        });
        if let Some(event) = event.as_object_mut() {
            let optional = [
                ("state_key", self.state_key.as_deref().map(Value::from)),
                ("unsigned", self.unsigned.clone().map(Value::Object)),
                (
                    "redacts",
                    self.redacts.as_ref().map(|id| id.as_str().into()),
                ),
            ];
            event.extend(
                optional
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?))),
            );
        }
        event
    }

    /// The stripped state form (`invite_room_state`, `knock_room_state`):
    /// content, sender, state_key, type.
    pub fn to_stripped_state(&self) -> Value {
        serde_json::json!({
            "content": self.content_value(),
            "sender": self.sender,
            "state_key": self.state_key.as_deref().unwrap_or_default(),
            "type": self.kind.to_string(),
        })
    }
}

fn required_str<'a>(
    json: &'a CanonicalJsonObject,
    field: &'static str,
) -> Result<&'a str, PduParseError> {
    match json.get(field) {
        Some(CanonicalJsonValue::String(value)) => Ok(value),
        Some(_) => Err(invalid(field, "not a string")),
        None => Err(PduParseError::Missing(field)),
    }
}

fn required_u64(json: &CanonicalJsonObject, field: &'static str) -> Result<u64, PduParseError> {
    match json.get(field) {
        Some(CanonicalJsonValue::Integer(value)) => {
            u64::try_from(i64::from(*value)).map_err(|_| invalid(field, "negative"))
        }
        Some(_) => Err(invalid(field, "not an integer")),
        None => Err(PduParseError::Missing(field)),
    }
}

/// `prev_events`/`auth_events`: event ids (v3+), or `[id, hashes]` pairs (v1, v2).
fn event_ids(
    json: &CanonicalJsonObject,
    field: &'static str,
) -> Result<Vec<OwnedEventId>, PduParseError> {
    let Some(CanonicalJsonValue::Array(items)) = json.get(field) else {
        return Err(json.get(field).map_or(PduParseError::Missing(field), |_| {
            invalid(field, "not an array")
        }));
    };
    items
        .iter()
        .map(|item| {
            let id = match item {
                CanonicalJsonValue::String(id) => id,
                CanonicalJsonValue::Array(pair) => match pair.first() {
                    Some(CanonicalJsonValue::String(id)) => id,
                    _ => return Err(invalid(field, "malformed event reference")),
                },
                _ => return Err(invalid(field, "malformed event reference")),
            };
            EventId::parse(id.as_str()).map_err(|e| invalid(field, e))
        })
        .collect()
}

fn redacts(json: &CanonicalJsonObject) -> Result<Option<OwnedEventId>, PduParseError> {
    let parse = |value: &CanonicalJsonValue| match value {
        CanonicalJsonValue::String(id) => {
            EventId::parse(id.as_str()).map_err(|e| invalid("redacts", e))
        }
        _ => Err(invalid("redacts", "not a string")),
    };
    let top = json.get("redacts").map(parse).transpose()?;
    let in_content = match json.get("content") {
        Some(CanonicalJsonValue::Object(content))
            if json.get("type").and_then(CanonicalJsonValue::as_str)
                == Some("m.room.redaction") =>
        {
            content.get("redacts").map(parse).transpose()?
        }
        _ => None,
    };
    match (top, in_content) {
        (Some(a), Some(b)) if a != b => {
            Err(invalid("redacts", "top-level and content values differ"))
        }
        (top, in_content) => Ok(top.or(in_content)),
    }
}

/// The stored form of a [`Pdu`], as read back.
#[derive(Deserialize)]
struct StoredPdu {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    json: CanonicalJsonObject,
    #[serde(default)]
    unsigned: Option<Map<String, Value>>,
}

/// The stored form of a [`Pdu`], as written (borrowed: no copy of the PDU).
#[derive(Serialize)]
struct StoredPduRef<'a> {
    event_id: &'a EventId,
    room_id: &'a RoomId,
    json: &'a CanonicalJsonObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsigned: &'a Option<Map<String, Value>>,
}

impl Serialize for Pdu {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredPduRef {
            event_id: &self.event_id,
            room_id: &self.room_id,
            json: &self.json,
            unsigned: &self.unsigned,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Pdu {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pdu, D::Error> {
        let stored = StoredPdu::deserialize(deserializer)?;
        let mut pdu = Pdu::from_json(stored.event_id, &stored.room_id, stored.json)
            .map_err(serde::de::Error::custom)?;
        pdu.unsigned = stored.unsigned;
        Ok(pdu)
    }
}

/// ruma's view of the event for the auth rules and state resolution.
impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }
    /// `None` when the PDU has no `room_id` (a v12 create event): the auth
    /// rules reject a v12 create that has one, and a v1–v11 one without.
    fn room_id(&self) -> Option<&RoomId> {
        self.json.contains_key("room_id").then_some(&*self.room_id)
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawJsonValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }
    /// Rejected events are never handed out as `Pdu`s: fetchers return
    /// `None` for them, which the auth rules also treat as a rejection.
    fn rejected(&self) -> bool {
        false
    }
}

/// Everything a new local PDU is built from, before hashes and signatures.
pub struct UnsignedPdu<'a> {
    pub rules: &'a RoomVersionRules,
    /// `None` only for a v12+ create event, whose room id is derived from it.
    pub room_id: Option<&'a RoomId>,
    pub sender: &'a UserId,
    pub kind: &'a TimelineEventType,
    pub state_key: Option<&'a str>,
    pub content: &'a RawJsonValue,
    pub prev_events: &'a [OwnedEventId],
    pub auth_events: &'a [OwnedEventId],
    pub depth: u64,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    /// For redactions: put in `content` (v11+) or at the top level.
    pub redacts: Option<&'a EventId>,
}

/// Why [`build_unsigned_pdu`] could not build a PDU.
#[derive(Debug, thiserror::Error)]
pub enum PduBuildError {
    #[error("event content must be a JSON object")]
    ContentNotObject,
    #[error("event content is not canonical JSON: {0}")]
    NotCanonical(String),
    #[error("depth {0} is too large")]
    DepthTooLarge(u64),
    #[error("a room id is required for this event")]
    MissingRoomId,
    #[error("a create event in this room version has no room id")]
    UnexpectedRoomId,
    #[error("`content.redacts` differs from the event being redacted")]
    ConflictingRedacts,
    #[error("building events for room versions 1 and 2 is not supported")]
    UnsupportedRoomVersion,
}

/// Builds a new PDU's JSON for its room version, ready for
/// `feathur_federation::finalize_pdu`: no `hashes`, `signatures`,
/// `event_id` or `unsigned`. Room-version aware: a v12 create event has no
/// `room_id`, and v11+ redactions carry `redacts` in `content`.
pub fn build_unsigned_pdu(p: UnsignedPdu<'_>) -> Result<CanonicalJsonObject, PduBuildError> {
    if p.rules.event_format.require_event_id {
        return Err(PduBuildError::UnsupportedRoomVersion);
    }
    let mut content = match serde_json::from_str::<CanonicalJsonValue>(p.content.get()) {
        Ok(CanonicalJsonValue::Object(content)) => content,
        Ok(_) => return Err(PduBuildError::ContentNotObject),
        Err(e) => return Err(PduBuildError::NotCanonical(e.to_string())),
    };
    let mut pdu = CanonicalJsonObject::new();
    let room_id_free_create = *p.kind == TimelineEventType::RoomCreate
        && p.rules.authorization.room_create_event_id_as_room_id;
    match (p.room_id, room_id_free_create) {
        (Some(room_id), false) => {
            pdu.insert("room_id".into(), room_id.as_str().into());
        }
        (None, true) => {}
        (Some(_), true) => return Err(PduBuildError::UnexpectedRoomId),
        (None, false) => return Err(PduBuildError::MissingRoomId),
    }
    if let Some(redacts) = p.redacts {
        if p.rules.redaction.content_field_redacts {
            match content.get("redacts") {
                None => {
                    content.insert("redacts".into(), redacts.as_str().into());
                }
                Some(existing) if existing.as_str() == Some(redacts.as_str()) => {}
                Some(_) => return Err(PduBuildError::ConflictingRedacts),
            }
        } else {
            pdu.insert("redacts".into(), redacts.as_str().into());
        }
    }
    let ids = |ids: &[OwnedEventId]| {
        CanonicalJsonValue::Array(ids.iter().map(|id| id.as_str().into()).collect())
    };
    let depth = Int::try_from(p.depth).map_err(|_| PduBuildError::DepthTooLarge(p.depth))?;
    pdu.insert("sender".into(), p.sender.as_str().into());
    pdu.insert("type".into(), p.kind.to_string().into());
    if let Some(state_key) = p.state_key {
        pdu.insert("state_key".into(), state_key.into());
    }
    pdu.insert("content".into(), CanonicalJsonValue::Object(content));
    pdu.insert("prev_events".into(), ids(p.prev_events));
    pdu.insert("auth_events".into(), ids(p.auth_events));
    pdu.insert("depth".into(), CanonicalJsonValue::Integer(depth));
    pdu.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(p.origin_server_ts.0.into()),
    );
    Ok(pdu)
}

#[cfg(test)]
mod tests;
