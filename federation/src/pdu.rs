//! PDU hashing, signing, event ids, verification and redaction (Server-Server
//! API, "PDUs", "Signing events", "Calculating the reference hash for an
//! event", "Validating hashes and signatures on received events").
//!
//! Everything cryptographic is ruma's ([`ruma::signatures`],
//! [`ruma::canonical_json::redact`], [`ruma::state_res::check_pdu_format`]);
//! this module picks the room-version rules and gives them one error type.

use ruma::canonical_json::{redact, CanonicalJsonFieldError};
use ruma::room_version_rules::{EventIdFormatVersion, RoomVersionRules};
use ruma::signatures::{
    hash_and_sign_event, reference_hash, verify_event, JsonError, PublicKeyMap, VerificationError,
    Verified,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, IdParseError, OwnedEventId, OwnedRoomId,
    RoomId,
};

use crate::SigningKey;

/// The largest PDU, in bytes of canonical JSON with signatures (Client-Server
/// API, "Size limits"; room versions' "Event format").
pub const MAX_PDU_BYTES: usize = 65_535;

/// Failure to finalise, identify, verify or redact a PDU.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    /// The PDU is over [`MAX_PDU_BYTES`]; clients get `M_TOO_LARGE`.
    #[error("PDU is larger than the maximum of {MAX_PDU_BYTES} bytes")]
    TooLarge,

    /// The PDU does not have the shape its room version requires
    /// (missing/mistyped fields, too many `prev_events`/`auth_events`, …).
    #[error("invalid PDU format: {0}")]
    Format(String),

    /// Hashing or signing failed (e.g. `content` or `hashes` is not an object).
    #[error("could not hash or sign PDU: {0}")]
    Json(JsonError),

    /// A required signature is missing, malformed, made with an unknown key
    /// or does not verify. The PDU must be dropped.
    #[error("PDU signature check failed: {0}")]
    Signature(#[from] VerificationError),

    /// An event or room id could not be formed or parsed.
    #[error("invalid identifier in PDU: {0}")]
    Id(#[from] IdParseError),

    /// Redaction failed because a top-level field has the wrong type.
    #[error("could not redact PDU: {0}")]
    Redaction(#[from] CanonicalJsonFieldError),
}

impl From<JsonError> for PduError {
    fn from(error: JsonError) -> Self {
        match error {
            JsonError::PduTooLarge => PduError::TooLarge,
            other => PduError::Json(other),
        }
    }
}

/// Outcome of [`verify_pdu`] when every required signature is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PduCheck {
    /// Signatures and content hash are valid.
    Valid,
    /// Signatures are valid but the content hash is not: the spec says to
    /// keep only the redacted form of the event ("Validating hashes and
    /// signatures on received events").
    ContentHashMismatch,
}

/// Adds the content hash and `origin`'s signature to a PDU the caller has
/// otherwise fully built, and returns its event id.
///
/// Stale `hashes` and `signatures` (and, for room versions whose PDUs carry
/// no `event_id`, any `event_id`) are dropped first, so a rebuilt PDU can be
/// finalised again. The result is checked against the room version's event
/// format and the size limit, so an over-large or malformed local event is
/// refused before it is persisted or sent.
pub fn finalize_pdu(
    key: &SigningKey,
    origin: &str,
    rules: &RoomVersionRules,
    pdu: &mut CanonicalJsonObject,
) -> Result<OwnedEventId, PduError> {
    pdu.remove("hashes");
    pdu.remove("signatures");
    if !rules.event_format.require_event_id {
        pdu.remove("event_id");
    }
    hash_and_sign_event(origin, key.key_pair(), pdu, &rules.redaction)?;
    check_size_and_format(pdu, rules)?;
    event_id(pdu, rules)
}

/// The event id of a PDU: for room versions 3+ `$` + the unpadded base64
/// (URL-safe from v4) of its reference hash, which covers the redacted event
/// without `signatures` and `unsigned` ("Calculating the reference hash for
/// an event"). Versions 1 and 2 carry the id in the PDU's `event_id` field.
///
/// The content hash is part of what is hashed, so call this on a finalised
/// or received PDU, never on one still missing its `hashes`.
pub fn event_id(
    pdu: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<OwnedEventId, PduError> {
    match rules.event_id_format {
        EventIdFormatVersion::V1 => match pdu.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => Ok(EventId::parse(id.as_str())?),
            _ => Err(PduError::Format(
                "missing `event_id` field in PDU".to_owned(),
            )),
        },
        _ => Ok(EventId::new_v2_or_v3(&reference_hash(pdu, rules)?)?),
    }
}

/// The room id of a room version 12+ room: `!` + the create event's reference
/// hash, i.e. its event id without the `$` (room version 12, "Room IDs").
///
/// Fails only for ids that cannot be room ids (e.g. over 255 bytes), which a
/// reference-hash event id never is.
pub fn room_id_for_create_event(create_event_id: &EventId) -> Result<OwnedRoomId, PduError> {
    let hash = create_event_id
        .as_str()
        .strip_prefix('$')
        .ok_or_else(|| PduError::Format("event id without `$` sigil".to_owned()))?;
    Ok(RoomId::new_v2(hash)?)
}

/// Checks a received PDU's format, signatures and content hash ("Checks
/// performed on receipt of a PDU", steps 1–3).
///
/// `keys` must hold the public keys of every server whose signature the room
/// version requires (the sender's server, and for restricted joins the
/// authorising server); a missing or bad signature is an `Err`, and the PDU
/// must be dropped. [`PduCheck::ContentHashMismatch`] means the PDU must be
/// replaced by [`redact_pdu`] of it.
pub fn verify_pdu(
    pdu: &CanonicalJsonObject,
    keys: &PublicKeyMap,
    rules: &RoomVersionRules,
) -> Result<PduCheck, PduError> {
    check_size_and_format(pdu, rules)?;
    Ok(match verify_event(keys, pdu, rules)? {
        Verified::All => PduCheck::Valid,
        Verified::Signatures => PduCheck::ContentHashMismatch,
    })
}

/// The redacted form of a PDU under its room version's redaction algorithm
/// (Client-Server API "Redactions"; e.g. v11 keeps the whole create content).
/// `hashes` and `signatures` survive, so the result still verifies.
pub fn redact_pdu(
    pdu: CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonObject, PduError> {
    Ok(redact(pdu, &rules.redaction, None)?)
}

/// The size limit (as [`PduError::TooLarge`], so it can become `M_TOO_LARGE`)
/// and then ruma's event-format check for the room version.
fn check_size_and_format(
    pdu: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<(), PduError> {
    let bytes = serde_json::to_vec(pdu).map_err(|e| PduError::Json(JsonError::Serde(e)))?;
    if bytes.len() > MAX_PDU_BYTES {
        return Err(PduError::TooLarge);
    }
    ruma::state_res::check_pdu_format(pdu, &rules.event_format).map_err(PduError::Format)
}

#[cfg(test)]
mod tests {
    use ruma::serde::{base64::UrlSafe, Base64};
    use serde_json::json;

    use super::*;
    use crate::to_canonical_object;

    fn message(room_id: &str) -> CanonicalJsonObject {
        to_canonical_object(&json!({
            "room_id": room_id,
            "sender": "@alice:example.org",
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "hello"},
            "origin_server_ts": 1_700_000_000_000_u64,
            "prev_events": ["$prev"],
            "auth_events": ["$create", "$member", "$power"],
            "depth": 5,
        }))
        .unwrap()
    }

    fn finalized(rules: &RoomVersionRules) -> (SigningKey, CanonicalJsonObject, OwnedEventId) {
        let key = SigningKey::generate().unwrap();
        let mut pdu = message("!room:example.org");
        let id = finalize_pdu(&key, "example.org", rules, &mut pdu).unwrap();
        (key, pdu, id)
    }

    #[test]
    fn finalized_pdu_verifies() {
        for rules in [RoomVersionRules::V10, RoomVersionRules::V11] {
            let (key, pdu, id) = finalized(&rules);
            assert!(pdu["hashes"].as_object().unwrap().contains_key("sha256"));
            assert!(!pdu.contains_key("event_id"));
            let keys = key.public_key_map("example.org");
            assert_eq!(verify_pdu(&pdu, &keys, &rules).unwrap(), PduCheck::Valid);
            assert_eq!(event_id(&pdu, &rules).unwrap(), id);
        }
    }

    #[test]
    fn refinalizing_replaces_stale_hash_and_signature() {
        let rules = RoomVersionRules::V11;
        let (key, mut pdu, id) = finalized(&rules);
        pdu.insert("depth".into(), CanonicalJsonValue::Integer(6u8.into()));
        pdu.insert("event_id".into(), id.to_string().into());
        let new_id = finalize_pdu(&key, "example.org", &rules, &mut pdu).unwrap();
        assert_ne!(new_id, id);
        assert!(!pdu.contains_key("event_id"));
        let keys = key.public_key_map("example.org");
        assert_eq!(verify_pdu(&pdu, &keys, &rules).unwrap(), PduCheck::Valid);
    }

    #[test]
    fn tampered_content_is_a_hash_mismatch() {
        let rules = RoomVersionRules::V11;
        let (key, mut pdu, _) = finalized(&rules);
        let content = pdu.get_mut("content").unwrap().as_object_mut().unwrap();
        content.insert("body".into(), "tampered".to_owned().into());
        let keys = key.public_key_map("example.org");
        assert_eq!(
            verify_pdu(&pdu, &keys, &rules).unwrap(),
            PduCheck::ContentHashMismatch
        );
        // The redacted form is what the spec says to keep, and it verifies.
        let redacted = redact_pdu(pdu, &rules).unwrap();
        assert!(redacted["content"].as_object().unwrap().is_empty());
        assert_eq!(
            verify_pdu(&redacted, &keys, &rules).unwrap(),
            PduCheck::ContentHashMismatch
        );
    }

    #[test]
    fn tampered_envelope_fails_signature() {
        let rules = RoomVersionRules::V11;
        let (key, pdu, _) = finalized(&rules);
        let keys = key.public_key_map("example.org");
        for (field, value) in [
            ("depth", CanonicalJsonValue::Integer(6u8.into())),
            ("sender", "@mallory:example.org".to_owned().into()),
            ("origin_server_ts", CanonicalJsonValue::Integer(1u8.into())),
        ] {
            let mut bad = pdu.clone();
            bad.insert(field.into(), value);
            assert!(
                matches!(verify_pdu(&bad, &keys, &rules), Err(PduError::Signature(_))),
                "{field}"
            );
        }
        // Another key for the same server does not verify either.
        let other = SigningKey::generate().unwrap();
        assert!(verify_pdu(&pdu, &other.public_key_map("example.org"), &rules).is_err());
        // No keys for the sender's server at all.
        assert!(verify_pdu(&pdu, &PublicKeyMap::new(), &rules).is_err());
    }

    #[test]
    fn malformed_pdu_is_a_format_error() {
        let rules = RoomVersionRules::V11;
        let (key, mut pdu, _) = finalized(&rules);
        pdu.remove("depth");
        let keys = key.public_key_map("example.org");
        assert!(matches!(
            verify_pdu(&pdu, &keys, &rules),
            Err(PduError::Format(_))
        ));
    }

    #[test]
    fn oversized_pdu_is_refused() {
        let key = SigningKey::generate().unwrap();
        let mut pdu = message("!room:example.org");
        let content = pdu.get_mut("content").unwrap().as_object_mut().unwrap();
        content.insert("body".into(), "x".repeat(MAX_PDU_BYTES).into());
        assert!(matches!(
            finalize_pdu(&key, "example.org", &RoomVersionRules::V11, &mut pdu),
            Err(PduError::TooLarge)
        ));
    }

    #[test]
    fn event_id_is_url_safe_reference_hash_and_ignores_unsigned() {
        let rules = RoomVersionRules::V11;
        let (_, mut pdu, id) = finalized(&rules);
        let hash = id.as_str().strip_prefix('$').unwrap();
        assert_eq!(hash.len(), 43);
        assert!(!hash.contains(['+', '/', '=']));
        assert_eq!(Base64::<UrlSafe>::parse(hash).unwrap().as_bytes().len(), 32);
        assert_eq!(hash, reference_hash(&pdu, &rules).unwrap());
        // The reference hash covers the redacted event: hashing the redacted
        // copy gives the same id.
        let redacted = redact_pdu(pdu.clone(), &rules).unwrap();
        assert_eq!(event_id(&redacted, &rules).unwrap(), id);

        pdu.insert(
            "unsigned".into(),
            to_canonical_object(&json!({"age": 1234})).unwrap().into(),
        );
        assert_eq!(event_id(&pdu, &rules).unwrap(), id);
        // Signatures are excluded too: a second server's signature keeps the id.
        let other = SigningKey::generate().unwrap();
        other.sign_json("other.org", &mut pdu).unwrap();
        assert_eq!(event_id(&pdu, &rules).unwrap(), id);
        // Content changes do not reach the redacted form, but the content
        // hash is covered, so re-finalising changes the id.
        let key = SigningKey::generate().unwrap();
        let content = pdu.get_mut("content").unwrap().as_object_mut().unwrap();
        content.insert("body".into(), "changed".to_owned().into());
        assert_ne!(
            finalize_pdu(&key, "example.org", &rules, &mut pdu).unwrap(),
            id
        );
    }

    #[test]
    fn v12_create_gives_room_id() {
        let rules = RoomVersionRules::V12;
        let key = SigningKey::generate().unwrap();
        let mut create = to_canonical_object(&json!({
            "sender": "@alice:example.org",
            "type": "m.room.create",
            "state_key": "",
            "content": {"room_version": "12"},
            "origin_server_ts": 1_700_000_000_000_u64,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
        }))
        .unwrap();
        let id = finalize_pdu(&key, "example.org", &rules, &mut create).unwrap();
        let room_id = room_id_for_create_event(&id).unwrap();
        assert_eq!(room_id.as_str(), format!("!{}", &id.as_str()[1..]));
        assert!(room_id.server_name().is_none());
        let keys = key.public_key_map("example.org");
        assert_eq!(verify_pdu(&create, &keys, &rules).unwrap(), PduCheck::Valid);
    }

    #[test]
    fn redaction_follows_room_version() {
        let create = to_canonical_object(&json!({
            "room_id": "!room:example.org",
            "sender": "@alice:example.org",
            "type": "m.room.create",
            "state_key": "",
            "origin": "example.org",
            "content": {"creator": "@alice:example.org", "room_version": "10", "m.federate": true, "extra": 1},
            "origin_server_ts": 1,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            "unsigned": {"age": 1},
        }))
        .unwrap();
        let v11 = redact_pdu(create.clone(), &RoomVersionRules::V11).unwrap();
        assert_eq!(v11["content"], create["content"]);
        assert!(!v11.contains_key("origin") && !v11.contains_key("unsigned"));
        let v10 = redact_pdu(create, &RoomVersionRules::V10).unwrap();
        let content = v10["content"].as_object().unwrap();
        assert_eq!(content.keys().collect::<Vec<_>>(), ["creator"]);
        assert!(v10.contains_key("origin"));

        let power = to_canonical_object(&json!({
            "room_id": "!room:example.org", "sender": "@alice:example.org",
            "type": "m.room.power_levels", "state_key": "",
            "content": {"invite": 50, "ban": 50, "users": {"@alice:example.org": 100}, "other": 1},
            "origin_server_ts": 1, "prev_events": [], "auth_events": [], "depth": 2,
        }))
        .unwrap();
        let v11 = redact_pdu(power.clone(), &RoomVersionRules::V11).unwrap();
        assert!(v11["content"].as_object().unwrap().contains_key("invite"));
        assert!(!v11["content"].as_object().unwrap().contains_key("other"));
        let v10 = redact_pdu(power, &RoomVersionRules::V10).unwrap();
        assert!(!v10["content"].as_object().unwrap().contains_key("invite"));
        assert!(v10["content"].as_object().unwrap().contains_key("ban"));
    }

    #[test]
    fn v1_event_ids_come_from_the_pdu() {
        let mut pdu = message("!room:example.org");
        assert!(matches!(
            event_id(&pdu, &RoomVersionRules::V1),
            Err(PduError::Format(_))
        ));
        pdu.insert("event_id".into(), "$abc:example.org".to_owned().into());
        assert_eq!(
            event_id(&pdu, &RoomVersionRules::V1).unwrap().as_str(),
            "$abc:example.org"
        );
    }
}
