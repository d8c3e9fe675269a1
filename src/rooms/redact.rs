//! Redactions (Client-Server API "Redactions"; room versions' "Redactions"
//! and "Handling redactions").
//!
//! A redaction is an `m.room.redaction` event sent like any other (the auth
//! rules decide whether the sender may send one at all). When it is staged
//! and its target is known, the stored target is replaced — in the same
//! batch — by the room version's redacted form of it, carrying the redaction
//! as `unsigned.redacted_because`. The original content is gone from the
//! database, so no read path can serve it; its relationship, if any, is
//! dropped from the relation indexes.

use ruma::{
    events::TimelineEventType, room_version_rules::RoomVersionRules, EventId, OwnedEventId, RoomId,
    UserId,
};
use serde_json::{Map, Value};

use super::{NewEvent, Pdu, Rooms, StateMap, Txn};
use crate::{
    error::{Error, Result},
    storage::Batch,
};

impl Rooms {
    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: redacts `target` as
    /// `sender`. The transaction id is kept apart from `/send`'s, as the
    /// spec scopes transaction ids to the endpoint ("Transaction
    /// identifiers").
    pub async fn redact(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &EventId,
        reason: Option<String>,
        txn: Txn<'_>,
    ) -> Result<OwnedEventId> {
        let mut content = Map::new();
        if let Some(reason) = reason {
            content.insert("reason".to_owned(), Value::String(reason));
        }
        let content = serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(format!("redaction content: {e}")))?;
        let event = NewEvent {
            kind: TimelineEventType::RoomRedaction,
            state_key: None,
            content,
            redacts: Some(target.to_owned()),
        };
        // The same txn id on `/send` names another request; only this
        // device's own requests share the scope, so a clash can only ever
        // return one of its own events.
        let txn_id = format!("redact/{target}/{}", txn.txn_id);
        let txn = Txn {
            txn_id: &txn_id,
            ..txn
        };
        self.send(room_id, sender, event, Some(txn)).await
    }

    /// The client rule for a local redaction, however it is sent (`/redact`
    /// or `/send/m.room.redaction`): the target must be an event of this
    /// room the sender can see (404 otherwise), and redacting another
    /// user's event needs the `redact` power level (403).
    pub(super) fn check_local_redaction(
        &self,
        rules: &RoomVersionRules,
        room_id: &RoomId,
        sender: &UserId,
        event: &NewEvent,
        current: &StateMap,
    ) -> Result<()> {
        if event.kind != TimelineEventType::RoomRedaction {
            return Ok(());
        }
        let target = match &event.redacts {
            Some(target) => target.clone(),
            None => content_redacts(&event.content)
                .ok_or_else(|| Error::bad_json("A redaction needs the event id it redacts"))?,
        };
        let target = match self.get_pdu(&target)? {
            Some(pdu) if pdu.room_id == room_id && self.can_see(sender, &pdu)? => pdu,
            _ => return Err(Error::not_found("Event not found")),
        };
        if target.sender == sender
            || self
                .power_levels(rules, current)?
                .user_can_redact_event_of_other(sender)
        {
            Ok(())
        } else {
            Err(Error::forbidden(
                "You need the redact power level to redact other users' events",
            ))
        }
    }

    /// Stage hook: applies an accepted redaction to its target, if the
    /// target is known and the redaction may take effect ("Handling
    /// redactions": the sender has the redact level, or is on the target
    /// sender's server). An unknown target is left alone.
    pub(super) fn apply_redaction(
        &self,
        batch: &mut Batch,
        rules: &RoomVersionRules,
        redaction: &Pdu,
        current: &StateMap,
    ) -> Result<()> {
        if redaction.kind != TimelineEventType::RoomRedaction {
            return Ok(());
        }
        let Some(target) = redaction.redacts.as_deref() else {
            return Ok(());
        };
        let Some(target) = self.get_pdu(target)? else {
            return Ok(());
        };
        if target.room_id != redaction.room_id || target.is_redacted() {
            return Ok(());
        }
        let may_redact = redaction.sender.server_name() == target.sender.server_name()
            || self
                .power_levels(rules, current)?
                .user_can_redact_event_of_other(&redaction.sender);
        if !may_redact {
            return Ok(());
        }
        self.unindex_relation(batch, &target)?;
        let redacted = redacted(rules, &target, redaction)?;
        batch.put(&self.pdus, &redacted.event_id, &redacted)?;
        // A redacted redaction: the copy its own target carries is updated.
        if let Some(inner) = target.redacts.as_deref() {
            self.refresh_redacted_because(batch, inner, &redacted)?;
        }
        Ok(())
    }

    /// Replaces `event`'s `unsigned.redacted_because` by the current form of
    /// `redaction`, if `redaction` is what redacted it.
    fn refresh_redacted_because(
        &self,
        batch: &mut Batch,
        event: &EventId,
        redaction: &Pdu,
    ) -> Result<()> {
        let Some(mut pdu) = self.get_pdu(event)? else {
            return Ok(());
        };
        let Some(unsigned) = &mut pdu.unsigned else {
            return Ok(());
        };
        let redacted_by = unsigned
            .get("redacted_because")
            .and_then(|because| because.get("event_id"))
            .and_then(Value::as_str);
        if redacted_by == Some(redaction.event_id.as_str()) {
            let because = redaction.to_client_event();
            unsigned.insert("redacted_because".to_owned(), because);
            batch.put(&self.pdus, &pdu.event_id, &pdu)?;
        }
        Ok(())
    }
}

/// `content.redacts` of a redaction sent through `/send` (room version 11+).
fn content_redacts(content: &serde_json::value::RawValue) -> Option<OwnedEventId> {
    #[derive(serde::Deserialize)]
    struct Content {
        redacts: OwnedEventId,
    }
    serde_json::from_str::<Content>(content.get())
        .ok()
        .map(|c| c.redacts)
}

/// `target` after the room version's redaction algorithm, with
/// `unsigned.redacted_because` set to `redaction` as clients see it.
fn redacted(rules: &RoomVersionRules, target: &Pdu, redaction: &Pdu) -> Result<Pdu> {
    let json = feathur_federation::redact_pdu((*target.json).clone(), rules)
        .map_err(|e| Error::internal(format!("redacting {} failed: {e}", target.event_id)))?;
    let mut pdu = Pdu::from_json(target.event_id.clone(), &target.room_id, json)
        .map_err(|e| Error::internal(format!("redacted event unreadable: {e}")))?;
    let mut unsigned = target.unsigned.clone().unwrap_or_default();
    unsigned.insert("redacted_because".to_owned(), redaction.to_client_event());
    pdu.unsigned = Some(unsigned);
    Ok(pdu)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use ruma::RoomVersionId;
    use serde_json::json;

    use crate::rooms::{
        testing::{errcode, fixture, no_filter, user},
        Direction,
    };

    #[tokio::test]
    async fn a_redaction_replaces_the_stored_event_in_every_room_version() {
        for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
            let f = fixture();
            let alice = user("alice");
            let room = f.room(&alice, version.clone(), &[]).await;
            let secret = f.text(&room, &alice, "my secret").await;
            let redaction = f.redact(&room, &alice, &secret, "t1").await.unwrap();
            // The same transaction is the same redaction.
            let again = f.redact(&room, &alice, &secret, "t1").await.unwrap();
            assert_eq!(again, redaction, "{version}");

            let stored = f.rooms.get_pdu(&secret).unwrap().unwrap();
            assert!(stored.is_redacted());
            assert_eq!(stored.content.get(), "{}", "{version}");
            let event = f
                .rooms
                .visible_event(&alice, &room, &secret)
                .unwrap()
                .to_client_event();
            let because = &event["unsigned"]["redacted_because"];
            assert_eq!(because["event_id"], redaction.as_str());
            assert_eq!(because["redacts"], secret.as_str());
            assert_eq!(because["content"]["reason"], "spam");
            let page = f
                .rooms
                .messages(&alice, &room, None, Direction::Backward, 5, &no_filter())
                .unwrap();
            let listed = page.events.iter().find(|e| e.event_id == secret).unwrap();
            assert_eq!(listed.content.get(), "{}");
            assert!(!serde_json::to_string(&f.rooms.get_pdu(&secret).unwrap())
                .unwrap()
                .contains("my secret"));
        }
    }

    #[tokio::test]
    async fn redacting_others_events_needs_the_redact_level() {
        let f = fixture();
        let (alice, bob) = (user("alice"), user("bob"));
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        f.join(&room, &bob).await;
        let from_alice = f.text(&room, &alice, "hi").await;
        let from_bob = f.text(&room, &bob, "hello").await;

        let refused = f.redact(&room, &bob, &from_alice, "b1").await;
        assert_eq!(
            errcode(refused),
            (StatusCode::FORBIDDEN, "M_FORBIDDEN".into())
        );
        // Nor through `/send`, with `redacts` in the content.
        let sneaky = json!({"redacts": from_alice});
        let sent = f.send(&room, &bob, "m.room.redaction", sneaky).await;
        assert_eq!(errcode(sent), (StatusCode::FORBIDDEN, "M_FORBIDDEN".into()));
        assert!(!f.rooms.get_pdu(&from_alice).unwrap().unwrap().is_redacted());

        f.redact(&room, &bob, &from_bob, "b2").await.unwrap();
        f.redact(&room, &alice, &from_bob, "a1").await.unwrap();
        let unknown = ruma::owned_event_id!("$unknown");
        let missing = f.redact(&room, &alice, &unknown, "a2").await;
        assert_eq!(
            errcode(missing),
            (StatusCode::NOT_FOUND, "M_NOT_FOUND".into())
        );
        // Redacting again keeps the first `redacted_because`.
        let stored = f.rooms.get_pdu(&from_bob).unwrap().unwrap();
        let because = &stored.unsigned.unwrap()["redacted_because"];
        assert_eq!(because["sender"], bob.as_str());
    }

    #[tokio::test]
    async fn a_redacted_redaction_updates_the_copy_its_target_carries() {
        let f = fixture();
        let alice = user("alice");
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        let message = f.text(&room, &alice, "oops").await;
        let redaction = f.redact(&room, &alice, &message, "t1").await.unwrap();
        f.redact(&room, &alice, &redaction, "t2").await.unwrap();
        let stored = f.rooms.get_pdu(&message).unwrap().unwrap();
        let because = &stored.unsigned.unwrap()["redacted_because"];
        assert_eq!(because["event_id"], redaction.as_str());
        assert_eq!(because["content"], json!({"redacts": message}));
    }
}
