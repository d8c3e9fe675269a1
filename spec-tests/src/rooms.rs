//! Room helpers over the Client-Server API, for any homeserver (Feathur or
//! a Synapse peer): send, read back, and wait for what federation delivers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{enc, HttpClient};
use crate::matrix::{assert_ok, Session};

impl HttpClient {
    /// Sends an `m.text` message as `who`; returns its event id.
    pub async fn send_text(&self, who: &Session, room: &str, body: &str) -> String {
        let txn = format!(
            "t{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let resp = assert_ok(
            self.put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    enc(room)
                ),
                who.token(),
                json!({"msgtype": "m.text", "body": body}),
            )
            .await,
        );
        resp["event_id"].as_str().unwrap().to_owned()
    }

    /// Up to 100 of the room's latest events as `who` reads them with
    /// `/messages`, oldest first (empty if `who` may not read the room).
    pub async fn room_timeline(&self, who: &Session, room: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                    enc(room)
                ),
                who.token(),
            )
            .await;
        if !status.is_success() {
            return Vec::new();
        }
        let mut events = body["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }

    /// Waits up to `within` until `who` reads the event `event_id` in the
    /// room; returns it. Panics with the timeline otherwise.
    pub async fn wait_for_event(
        &self,
        who: &Session,
        room: &str,
        event_id: &str,
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let events = self.room_timeline(who, room).await;
            if let Some(event) = events.iter().find(|e| e["event_id"] == event_id) {
                return event.clone();
            }
            if Instant::now() > deadline {
                panic!("{event_id} did not arrive within {within:?}; timeline: {events:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `user`'s membership in the room as `who` reads the room state.
    pub async fn membership_of(&self, who: &Session, room: &str, user: &str) -> Option<String> {
        let (status, body) = self
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                    enc(room),
                    enc(user)
                ),
                who.token(),
            )
            .await;
        status
            .is_success()
            .then(|| body["membership"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits up to `within` until `who` reads `user`'s membership as `wanted`.
    pub async fn wait_for_membership(
        &self,
        who: &Session,
        room: &str,
        user: &str,
        wanted: &str,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let found = self.membership_of(who, room, user).await;
            if found.as_deref() == Some(wanted) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{user} is {found:?}, not {wanted}, after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
