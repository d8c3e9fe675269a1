//! EDUs we send (Server-Server API "Typing Notifications", "Receipts"):
//! a local user's typing and public read receipts go to every other server
//! with a member joined to the room, through the sending queue.

use ruma::{
    api::federation::transactions::edu::Edu, events::receipt::ReceiptThread, serde::Raw, EventId,
    MilliSecondsSinceUnixEpoch, RoomId, UserId,
};
use serde_json::{json, Value};

use crate::{
    error::{Error, Result},
    rooms::Rooms,
    sending::Sending,
};

async fn to_other_servers(
    rooms: &Rooms,
    sending: &Sending,
    room_id: &RoomId,
    edu: Value,
) -> Result<()> {
    let servers: Vec<_> = rooms
        .servers_in_room(room_id)?
        .into_iter()
        .filter(|s| s != rooms.server_name())
        .collect();
    if servers.is_empty() {
        return Ok(());
    }
    let raw = serde_json::value::to_raw_value(&edu)
        .map(Raw::<Edu>::from_json)
        .map_err(|e| Error::internal(format!("encoding an EDU: {e}")))?;
    for server in servers {
        sending.send_edu(&server, &raw).await?;
    }
    Ok(())
}

/// `m.typing` for `user_id` in `room_id`.
pub async fn share_typing(
    rooms: &Rooms,
    sending: &Sending,
    room_id: &RoomId,
    user_id: &UserId,
    typing: bool,
) -> Result<()> {
    let edu = json!({
        "edu_type": "m.typing",
        "content": {"room_id": room_id, "user_id": user_id, "typing": typing},
    });
    to_other_servers(rooms, sending, room_id, edu).await
}

/// `m.receipt` (`m.read`) for `user_id` at `event_id`.
pub async fn share_read_receipt(
    rooms: &Rooms,
    sending: &Sending,
    room_id: &RoomId,
    user_id: &UserId,
    event_id: &EventId,
    thread: &ReceiptThread,
) -> Result<()> {
    let mut data = json!({ "ts": MilliSecondsSinceUnixEpoch::now() });
    if let Some(thread) = thread.as_str() {
        data["thread_id"] = thread.into();
    }
    let edu = json!({
        "edu_type": "m.receipt",
        "content": {
            room_id.as_str(): {
                "m.read": { user_id.as_str(): { "event_ids": [event_id], "data": data } }
            }
        },
    });
    to_other_servers(rooms, sending, room_id, edu).await
}

/// Tells the servers that share a room with a local user that the user's
/// devices or keys changed (`m.device_list_update`). `prev_id` is left
/// empty, which asks receivers to fetch the whole list anew with
/// `user/devices` ("Device Management"); receivers then also learn about
/// cross-signing changes from that answer.
pub struct DeviceListShare(pub std::sync::Weak<crate::Services>);

impl crate::e2ee::DeviceListOutbox for DeviceListShare {
    fn local_user_changed(&self, user: &UserId) {
        let Some(services) = self.0.upgrade() else {
            return;
        };
        let user = user.to_owned();
        tokio::spawn(async move {
            if let Err(e) = share_device_list(&services, &user).await {
                tracing::warn!(%user, "sending a device list update failed: {e}");
            }
        });
    }
}

async fn share_device_list(services: &crate::Services, user: &ruma::OwnedUserId) -> Result<()> {
    let rooms = &services.rooms;
    let mut servers = std::collections::BTreeSet::new();
    for room in rooms.joined_rooms(user)? {
        servers.extend(rooms.servers_in_room(&room)?);
    }
    servers.remove(rooms.server_name());
    if servers.is_empty() {
        return Ok(());
    }
    let device_id = services
        .accounts
        .list_devices(user)?
        .into_iter()
        .next()
        .map_or_else(|| "UNKNOWN".to_owned(), |(id, _)| id.to_string());
    let edu = json!({
        "edu_type": "m.device_list_update",
        "content": {
            "user_id": user,
            "device_id": device_id,
            "stream_id": rooms.committed_position(),
            "prev_id": [],
        },
    });
    let raw = serde_json::value::to_raw_value(&edu)
        .map(Raw::<Edu>::from_json)
        .map_err(|e| Error::internal(format!("encoding an EDU: {e}")))?;
    for server in servers {
        services.sending.send_edu(&server, &raw).await?;
    }
    Ok(())
}

/// Sends local users' presence changes to the servers sharing a room with
/// them: one `m.presence` EDU per destination per published batch.
pub struct PresenceShare(pub std::sync::Weak<crate::Services>);

impl crate::presence::PresenceOutbox for PresenceShare {
    fn changed(&self, updates: Vec<(ruma::OwnedUserId, Value)>) {
        let Some(services) = self.0.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = share_presence(&services, updates).await {
                tracing::warn!("sending presence updates failed: {e}");
            }
        });
    }
}

async fn share_presence(
    services: &crate::Services,
    updates: Vec<(ruma::OwnedUserId, Value)>,
) -> Result<()> {
    let rooms = &services.rooms;
    let mut by_server: std::collections::BTreeMap<ruma::OwnedServerName, Vec<Value>> =
        std::collections::BTreeMap::new();
    for (user, mut content) in updates {
        let mut servers = std::collections::BTreeSet::new();
        for room in rooms.joined_rooms(&user)? {
            servers.extend(rooms.servers_in_room(&room)?);
        }
        servers.remove(rooms.server_name());
        content["user_id"] = json!(user);
        for server in servers {
            by_server.entry(server).or_default().push(content.clone());
        }
    }
    for (server, push) in by_server {
        let edu = json!({ "edu_type": "m.presence", "content": { "push": push } });
        let raw = serde_json::value::to_raw_value(&edu)
            .map(Raw::<Edu>::from_json)
            .map_err(|e| Error::internal(format!("encoding an EDU: {e}")))?;
        services.sending.send_edu(&server, &raw).await?;
    }
    Ok(())
}
