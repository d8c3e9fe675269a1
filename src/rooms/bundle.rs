//! Bundled aggregations (Client-Server API "Aggregations of child events"):
//! the `unsigned.m.relations` summary of an event's children, computed for
//! one user so that only children that user may see are counted or shown.
//!
//! - `m.thread` ("Server-side aggregation of `m.thread` relationships"):
//!   `latest_event` (in full, with its own aggregations), `count` and
//!   `current_user_participated`.
//! - `m.reference` ("Reference relations"): `chunk` of `{event_id}`.
//! - `m.replace` ("Server-side aggregation of `m.replace` relationships",
//!   changed in v1.7): the most recent valid replacement event in full (by
//!   `origin_server_ts`, then the greater `event_id`), and none for a
//!   redacted original. The original's content is left as it is.
//! - `m.annotation` is not aggregated ("Event annotations and reactions").
//!
//! State events receive none (the spec's warning in "Aggregations of child
//! events"). Children from ignored users are not left out yet: this server
//! does not implement ignoring users.

use ruma::{events::TimelineEventType, UserId};
use serde_json::{json, Map, Value};

use super::{
    relations::{relates_to, REFERENCE, REPLACE, THREAD},
    timeline::Direction,
    Pdu, Rooms,
};
use crate::error::Result;

impl Rooms {
    /// `pdu` as served to `user_id`: with `unsigned.m.relations` when it has
    /// children to aggregate that the user may see. Every read path that
    /// returns room events to a client passes them through here.
    pub fn with_aggregations(&self, user_id: &UserId, mut pdu: Pdu) -> Result<Pdu> {
        let relations = self.aggregations(user_id, &pdu, true)?;
        if !relations.is_empty() {
            pdu.unsigned
                .get_or_insert_with(Map::new)
                .insert("m.relations".to_owned(), Value::Object(relations));
        }
        Ok(pdu)
    }

    /// The `m.relations` object of `parent`; `with_thread: false` for a
    /// thread's `latest_event`, which cannot be a thread root itself.
    fn aggregations(
        &self,
        user_id: &UserId,
        parent: &Pdu,
        with_thread: bool,
    ) -> Result<Map<String, Value>> {
        let mut relations = Map::new();
        if parent.is_state() {
            return Ok(relations);
        }
        if with_thread {
            if let Some(thread) = self.thread_summary(user_id, parent)? {
                relations.insert(THREAD.to_owned(), thread);
            }
        }
        let mut references = Vec::new();
        self.for_visible_children(user_id, parent, REFERENCE, |child| {
            references.push(json!({ "event_id": child.event_id }));
        })?;
        if !references.is_empty() {
            relations.insert(REFERENCE.to_owned(), json!({ "chunk": references }));
        }
        if let Some(edit) = self.latest_replacement(user_id, parent)? {
            relations.insert(REPLACE.to_owned(), edit.to_client_event());
        }
        Ok(relations)
    }

    /// Calls `f` with each `rel_type` child of `parent` the user may see,
    /// oldest first.
    fn for_visible_children(
        &self,
        user_id: &UserId,
        parent: &Pdu,
        rel_type: &str,
        mut f: impl FnMut(Pdu),
    ) -> Result<()> {
        let children =
            self.relations
                .children(&parent.event_id, Some(rel_type), None, Direction::Forward);
        for row in children {
            let (_, relation) = row?;
            if let Some(child) = self.get_pdu(&relation.child)? {
                if child.room_id == parent.room_id && self.can_see(user_id, &child)? {
                    f(child);
                }
            }
        }
        Ok(())
    }

    /// The `m.thread` summary of a thread root, if it has visible replies.
    fn thread_summary(&self, user_id: &UserId, root: &Pdu) -> Result<Option<Value>> {
        let (mut count, mut latest) = (0usize, None);
        let mut participated = root.sender == user_id;
        self.for_visible_children(user_id, root, THREAD, |reply| {
            count += 1;
            participated |= reply.sender == user_id;
            latest = Some(reply);
        })?;
        let Some(mut latest) = latest else {
            return Ok(None);
        };
        let nested = self.aggregations(user_id, &latest, false)?;
        if !nested.is_empty() {
            latest
                .unsigned
                .get_or_insert_with(Map::new)
                .insert("m.relations".to_owned(), Value::Object(nested));
        }
        Ok(Some(json!({
            "latest_event": latest.to_client_event(),
            "count": count,
            "current_user_participated": participated,
        })))
    }

    /// The most recent valid replacement of `original` ("Validity of
    /// replacement events": same sender and type, no state key, the original
    /// not itself a replacement, `m.new_content` present unless encrypted).
    fn latest_replacement(&self, user_id: &UserId, original: &Pdu) -> Result<Option<Pdu>> {
        if original.is_redacted()
            || relates_to(&original.content).is_some_and(|r| r.rel_type == REPLACE)
        {
            return Ok(None);
        }
        let mut best: Option<Pdu> = None;
        self.for_visible_children(user_id, original, REPLACE, |edit| {
            let valid = edit.sender == original.sender
                && edit.kind == original.kind
                && !edit.is_state()
                && (edit.kind == TimelineEventType::RoomEncrypted || has_new_content(&edit));
            let newer = best.as_ref().is_none_or(|best| {
                (edit.origin_server_ts, &edit.event_id) > (best.origin_server_ts, &best.event_id)
            });
            if valid && newer {
                best = Some(edit);
            }
        })?;
        Ok(best)
    }
}

fn has_new_content(pdu: &Pdu) -> bool {
    serde_json::from_str::<Map<String, Value>>(pdu.content.get())
        .is_ok_and(|content| content.get("m.new_content").is_some_and(Value::is_object))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use ruma::{OwnedEventId, RoomVersionId};
    use serde_json::{json, Value};

    use crate::rooms::{
        testing::{errcode, fixture, user, Fixture},
        Change, Direction, RelationsQuery,
    };

    fn relates(rel_type: &str, parent: &OwnedEventId) -> Value {
        json!({"rel_type": rel_type, "event_id": parent})
    }

    async fn reply(f: &Fixture, room: &ruma::RoomId, who: &ruma::UserId, root: &OwnedEventId) {
        let content =
            json!({"msgtype": "m.text", "body": "re", "m.relates_to": relates("m.thread", root)});
        f.send(room, who, "m.room.message", content).await.unwrap();
    }

    #[tokio::test]
    async fn thread_summaries_count_only_what_the_user_may_see() {
        let f = fixture();
        let (alice, bob) = (user("alice"), user("bob"));
        let joined = json!({"history_visibility": "joined"});
        let room = f
            .room(
                &alice,
                RoomVersionId::V11,
                &[("m.room.history_visibility", joined)],
            )
            .await;
        f.join(&room, &bob).await;
        let root = f.text(&room, &alice, "root").await;
        reply(&f, &room, &bob, &root).await;
        f.membership(&room, &bob, Change::Leave).await;
        reply(&f, &room, &alice, &root).await;
        reply(&f, &room, &alice, &root).await;

        let seen_by = |who| {
            let event = f.rooms.visible_event(who, &room, &root).unwrap();
            event.to_client_event()["unsigned"]["m.relations"]["m.thread"].clone()
        };
        let for_alice = seen_by(&alice);
        assert_eq!(for_alice["count"], 3);
        assert_eq!(for_alice["current_user_participated"], true);
        assert_eq!(for_alice["latest_event"]["sender"], alice.as_str());
        let for_bob = seen_by(&bob);
        assert_eq!(for_bob["count"], 1);
        assert_eq!(for_bob["current_user_participated"], true);
        assert_eq!(for_bob["latest_event"]["sender"], bob.as_str());

        let threads = f.rooms.threads(&alice, &room, false, None, 10).unwrap();
        assert_eq!(threads.roots.len(), 1);
        let mine = f.rooms.threads(&bob, &room, true, None, 10).unwrap();
        assert_eq!(mine.roots[0].event_id, root);
    }

    #[tokio::test]
    async fn edits_references_and_the_rules_for_new_relations() {
        let f = fixture();
        let (alice, bob) = (user("alice"), user("bob"));
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        f.join(&room, &bob).await;
        let original = f.text(&room, &alice, "helo").await;
        let edit = |body: &str| {
            json!({"msgtype": "m.text", "body": format!("* {body}"),
                "m.new_content": {"msgtype": "m.text", "body": body},
                "m.relates_to": relates("m.replace", &original)})
        };
        let first = f
            .send(&room, &alice, "m.room.message", edit("hello"))
            .await
            .unwrap();
        let second = f
            .send(&room, &alice, "m.room.message", edit("hello!"))
            .await
            .unwrap();
        // Not valid replacements: another sender, no `m.new_content`.
        f.send(&room, &bob, "m.room.message", edit("hijack"))
            .await
            .unwrap();
        let bare = json!({"body": "x", "m.relates_to": relates("m.replace", &original)});
        f.send(&room, &alice, "m.room.message", bare).await.unwrap();
        let note = json!({"m.relates_to": relates("m.reference", &original)});
        let reference = f.send(&room, &bob, "org.example.note", note).await.unwrap();

        let event = f.rooms.visible_event(&bob, &room, &original).unwrap();
        let relations = event.unsigned.clone().unwrap()["m.relations"].clone();
        // The newest by origin_server_ts, then by the greater event id.
        let edits = [&first, &second].map(|id| f.rooms.get_pdu(id).unwrap().unwrap());
        let newest = edits
            .iter()
            .max_by_key(|e| (e.origin_server_ts, e.event_id.clone()))
            .unwrap();
        let latest = &relations["m.replace"];
        assert_eq!(latest["event_id"], newest.event_id.as_str());
        assert_eq!(
            latest["content"]["m.new_content"]["body"],
            newest.to_client_event()["content"]["m.new_content"]["body"]
        );
        assert_eq!(
            relations["m.reference"],
            json!({"chunk": [{"event_id": reference}]})
        );
        assert!(relations.get("m.thread").is_none() && relations.get("m.annotation").is_none());
        assert_eq!(event.content.get(), r#"{"body":"helo","msgtype":"m.text"}"#);

        // A thread cannot start at a child; an annotation cannot repeat.
        let thread = json!({"body": "t", "m.relates_to": relates("m.thread", &first)});
        let refused = f.send(&room, &bob, "m.room.message", thread).await;
        assert_eq!(
            errcode(refused),
            (StatusCode::BAD_REQUEST, "M_UNKNOWN".into())
        );
        let mut like = json!({"m.relates_to": relates("m.annotation", &original)});
        like["m.relates_to"]["key"] = "👍".into();
        let liked = f
            .send(&room, &bob, "m.reaction", like.clone())
            .await
            .unwrap();
        let twice = f.send(&room, &bob, "m.reaction", like.clone()).await;
        assert_eq!(
            errcode(twice),
            (StatusCode::BAD_REQUEST, "M_DUPLICATE_ANNOTATION".into())
        );
        f.send(&room, &alice, "m.reaction", like.clone())
            .await
            .unwrap();
        // Once redacted, the reaction is gone and may be sent again.
        f.redact(&room, &bob, &liked, "r1").await.unwrap();
        f.send(&room, &bob, "m.reaction", like).await.unwrap();

        // A redacted original bundles no edit.
        f.redact(&room, &alice, &original, "r2").await.unwrap();
        let event = f.rooms.visible_event(&bob, &room, &original).unwrap();
        let relations = &event.unsigned.unwrap()["m.relations"];
        assert!(relations.get("m.replace").is_none());
        assert!(relations.get("m.reference").is_some());
    }

    #[tokio::test]
    async fn relations_recurse_through_matching_children_only() {
        let f = fixture();
        let alice = user("alice");
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        let root = f.text(&room, &alice, "root").await;
        let child = |parent: &OwnedEventId| json!({"m.relates_to": relates("m.reference", parent)});
        let a = f.send(&room, &alice, "m.note", child(&root)).await.unwrap();
        let b = f.send(&room, &alice, "m.other", child(&a)).await.unwrap();
        let c = f.send(&room, &alice, "m.note", child(&b)).await.unwrap();
        let d = f.send(&room, &alice, "m.note", child(&a)).await.unwrap();
        let query = |event_type, recurse| RelationsQuery {
            rel_type: Some("m.reference"),
            event_type,
            from: None,
            to: None,
            dir: Direction::Forward,
            limit: 10,
            recurse,
        };
        let ids = |q: &RelationsQuery<'_>| -> Vec<OwnedEventId> {
            let page = f.rooms.relations(&alice, &room, &root, q).unwrap();
            page.events.into_iter().map(|e| e.event_id).collect()
        };
        assert_eq!(ids(&query(None, false)), vec![a.clone()]);
        assert_eq!(ids(&query(None, true)), [a.clone(), b, c, d.clone()]);
        // `c` matches, but only through `b`, which does not.
        assert_eq!(ids(&query(Some("m.note"), true)), [a, d]);
        let page = f
            .rooms
            .relations(&alice, &room, &root, &query(None, true))
            .unwrap();
        assert_eq!(page.recursion_depth, Some(3));
    }
}
