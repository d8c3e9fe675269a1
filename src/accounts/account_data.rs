//! Global account data (Client-Server API: "Client Config"): arbitrary JSON
//! objects a user's clients share, keyed by event type.

use ruma::{OwnedRoomId, OwnedUserId};

use super::Accounts;
use crate::error::{Error, Result};

/// Types the server manages itself; the spec forbids setting them through
/// `/account_data` (405 `M_BAD_JSON`).
const SERVER_MANAGED_TYPES: &[&str] = &["m.fully_read", "m.push_rules"];

fn client_settable(event_type: &str) -> Result<()> {
    if SERVER_MANAGED_TYPES.contains(&event_type) {
        return Err(Error::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            ruma::api::error::ErrorKind::BadJson,
            format!("{event_type} cannot be set through the account data API"),
        ));
    }
    Ok(())
}

impl Accounts {
    pub fn global_account_data(
        &self,
        user_id: &OwnedUserId,
        event_type: &str,
    ) -> Result<Option<serde_json::Value>> {
        Ok(self
            .account_data
            .get(&(user_id.clone(), event_type.to_owned()))?)
    }

    pub async fn set_global_account_data(
        &self,
        user_id: &OwnedUserId,
        event_type: &str,
        content: serde_json::Value,
    ) -> Result<()> {
        client_settable(event_type)?;
        if !content.is_object() {
            return Err(Error::bad_json(
                "Account data content must be a JSON object",
            ));
        }
        self.put_global_account_data(user_id, event_type, &content)
            .await
    }

    /// Writes global account data of a type the server manages itself
    /// (`m.push_rules`, written by the `push` domain; Client-Server API
    /// "Push Rules": clients see the rules as this account data in `/sync`).
    pub async fn set_server_account_data(
        &self,
        user_id: &OwnedUserId,
        event_type: &str,
        content: serde_json::Value,
    ) -> Result<()> {
        if !SERVER_MANAGED_TYPES.contains(&event_type) {
            return Err(Error::internal(format!(
                "{event_type} is not server-managed account data"
            )));
        }
        self.put_global_account_data(user_id, event_type, &content)
            .await
    }

    /// Every global account data write: durable, then the owner's waiting
    /// syncs are told.
    async fn put_global_account_data(
        &self,
        user_id: &OwnedUserId,
        event_type: &str,
        content: &serde_json::Value,
    ) -> Result<()> {
        let mut batch = self.storage.batch();
        batch.put(
            &self.account_data,
            &(user_id.clone(), event_type.to_owned()),
            content,
        )?;
        self.storage.commit(batch).await?;
        self.account_data_changed(user_id);
        Ok(())
    }
}

impl Accounts {
    pub fn room_account_data(
        &self,
        user_id: &OwnedUserId,
        room_id: &OwnedRoomId,
        event_type: &str,
    ) -> Result<Option<serde_json::Value>> {
        let key = (user_id.clone(), room_id.clone(), event_type.to_owned());
        Ok(self.room_account_data.get(&key)?)
    }

    /// Per-room account data; `m.fully_read` is the server's, like globally.
    pub async fn set_room_account_data(
        &self,
        user_id: &OwnedUserId,
        room_id: &OwnedRoomId,
        event_type: &str,
        content: serde_json::Value,
    ) -> Result<()> {
        client_settable(event_type)?;
        self.put_room_account_data(user_id, room_id, event_type, content)
            .await
    }

    /// Moves the room's `m.fully_read` marker (Client-Server API "Fully read
    /// markers"): clients may not write it directly, `/read_markers` does.
    pub async fn set_fully_read(
        &self,
        user_id: &OwnedUserId,
        room_id: &OwnedRoomId,
        event_id: &ruma::EventId,
    ) -> Result<()> {
        let content = serde_json::json!({ "event_id": event_id });
        self.put_room_account_data(user_id, room_id, "m.fully_read", content)
            .await
    }

    async fn put_room_account_data(
        &self,
        user_id: &OwnedUserId,
        room_id: &OwnedRoomId,
        event_type: &str,
        content: serde_json::Value,
    ) -> Result<()> {
        if !content.is_object() {
            return Err(Error::bad_json(
                "Account data content must be a JSON object",
            ));
        }
        let key = (user_id.clone(), room_id.clone(), event_type.to_owned());
        let mut batch = self.storage.batch();
        batch.put(&self.room_account_data, &key, &content)?;
        self.storage.commit(batch).await?;
        self.account_data_changed(user_id);
        Ok(())
    }

    /// The room's `m.tag` content: `{"tags": {name: {order?}}}` (Client-Server
    /// API: "Room tagging").
    pub fn room_tags(
        &self,
        user_id: &OwnedUserId,
        room_id: &OwnedRoomId,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let content = self.room_account_data(user_id, room_id, TAG_TYPE)?;
        Ok(content
            .and_then(|c| c.get("tags").and_then(|t| t.as_object().cloned()))
            .unwrap_or_default())
    }

    /// Adds (`Some(info)`) or removes (`None`) one tag; read-modify-write of
    /// `m.tag` under a lock so concurrent tag changes are not lost.
    pub async fn set_room_tag(
        &self,
        user_id: &OwnedUserId,
        room_id: &OwnedRoomId,
        tag: &str,
        info: Option<serde_json::Value>,
    ) -> Result<()> {
        if tag.len() > 255 {
            return Err(Error::invalid_param("Tag names are at most 255 bytes"));
        }
        let _guard = self.account_data_lock.lock().await;
        let mut tags = self.room_tags(user_id, room_id)?;
        match info {
            Some(info) => tags.insert(tag.to_owned(), info),
            None => tags.remove(tag),
        };
        let content = serde_json::json!({ "tags": tags });
        self.put_room_account_data(user_id, room_id, TAG_TYPE, content)
            .await
    }
}

const TAG_TYPE: &str = "m.tag";
