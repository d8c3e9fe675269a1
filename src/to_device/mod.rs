//! Send-to-device messaging (Client-Server API, module "Send-to-Device
//! messaging"): `PUT /sendToDevice/{eventType}/{txnId}` and the top-level
//! `to_device` section of `/sync`. Messages for users of other servers
//! become `m.direct_to_device` EDUs (Server-Server API "Send-to-device
//! messaging"), one per destination server, queued in the same batch as the
//! transaction record; without federation they are dropped with a log line.
//! Messages arriving in such EDUs are delivered like local ones
//! ([`ToDevice::receive`]).
//!
//! ## Sending
//!
//! `messages` maps user id → device id (or `*`, "all known devices for the
//! user") → content. "Only one message can be sent to each device per
//! transaction": an entry naming a device beats `*` for that device. Devices the
//! user does not have, and unknown users, are skipped (nothing could ever
//! fetch the message). The whole request is one batch at one new, durable
//! stream position (`rooms::stream` marker inside an `InFlight` guard, as
//! typing and receipts do), and the transaction id is recorded in the same
//! batch: a retry with the same `(device, event type, txn id)` — the spec's
//! transaction scope ("Transaction identifiers": same device, same HTTP
//! path) — changes nothing, also after a restart. The recipients' syncs are woken through
//! the stream's notes once the committed position covers the message.
//!
//! ## Delivery and acknowledgement
//!
//! A device's inbox is read in position order ("in order of arrival"). A
//! `/sync` over `(since, upto]` first deletes the messages at positions
//! `<= since`: "When the client calls `/sync` again with the `next_batch`
//! token from the first response, the server should infer that any
//! send-to-device messages in that response have been delivered
//! successfully" (a token at or past a message's position comes only from
//! a response whose range held it). It then returns the remaining messages
//! `<= upto`, at most [`MAX_PER_SYNC`]. When more remain, the response ends at
//! the position of the last message returned: its `next_batch` then covers
//! exactly the delivered messages, and the rest arrive in the next sync
//! (`sync::v2` builds the whole response up to that lower position). A sync
//! retried with an older token gets the unacknowledged messages again.
//!
//! A deleted device's inbox is deleted with it ([`ToDevice::remove_inbox_into`],
//! called from `e2ee`'s device removal hook in the same batch).
//!
//! Tables (key → value):
//! - `userdeviceidpos_todevice`: (recipient, device, stream position) →
//!   [`Message`]
//! - `userdeviceidtxnid_response` (shared with `rooms`): (sender, device,
//!   `"sendToDevice <type length>:<type><txn id>"`) → the position used
//!   (0: nothing was stored).

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::{Hash, Hasher},
    sync::Arc,
};

use ruma::{
    api::client::to_device::send_event_to_device::v3::Messages, events::AnyToDeviceEvent,
    serde::Raw, to_device::DeviceIdOrAllDevices, DeviceId, OwnedDeviceId, OwnedUserId, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    accounts::Accounts,
    error::{Error, Result},
    rooms::stream::Stream,
    storage::{Cf, Storage, Table},
};

/// At most this many messages per `/sync` response ("Send-to-Device
/// messaging", server behaviour: "100 messages is recommended as a
/// reasonable limit").
pub const MAX_PER_SYNC: usize = 100;

/// Stripes of the per-sender transaction lock.
const LOCK_STRIPES: usize = 16;

/// A stored message: what `/sync` delivers (`sender`, `type`, `content`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub sender: OwnedUserId,
    #[serde(rename = "type")]
    pub kind: String,
    pub content: Box<RawValue>,
}

/// One send request, as the handler received it.
pub struct Send<'a> {
    pub sender: &'a UserId,
    pub sender_device: &'a DeviceId,
    pub event_type: &'a str,
    pub txn_id: &'a str,
    pub messages: &'a Messages,
}

struct Inner {
    storage: Arc<Storage>,
    stream: Arc<Stream>,
    inbox: Table<(OwnedUserId, OwnedDeviceId, u64), Message>,
    txns: Table<(OwnedUserId, String, String), u64>,
    /// A transaction is checked and recorded under its sender device's stripe.
    locks: [tokio::sync::Mutex<()>; LOCK_STRIPES],
    /// Where messages for other servers' users go; unset without federation.
    sending: std::sync::OnceLock<crate::sending::Sending>,
}

/// The to-device domain. Cheap to clone (shared state).
#[derive(Clone)]
pub struct ToDevice {
    inner: Arc<Inner>,
}

impl ToDevice {
    pub fn new(storage: Arc<Storage>, stream: Arc<Stream>) -> ToDevice {
        ToDevice {
            inner: Arc::new(Inner {
                inbox: storage.table(Cf::UserDeviceIdPosToDevice),
                txns: storage.table(Cf::UserDeviceIdTxnIdResponse),
                locks: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
                storage,
                stream,
                sending: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Messages for other servers' users are queued as EDUs from now on.
    pub fn set_sending(&self, sending: crate::sending::Sending) {
        let _ = self.inner.sending.set(sending);
    }

    /// Delivers the messages of an `m.direct_to_device` EDU from `sender`
    /// (a user of the sending server) to our users' devices.
    pub async fn receive(
        &self,
        accounts: &Accounts,
        sender: &UserId,
        event_type: &str,
        messages: &Messages,
    ) -> Result<()> {
        let inner = &self.inner;
        let targets = resolve(accounts, messages)?;
        if targets.is_empty() {
            return Ok(());
        }
        let mut batch = inner.storage.batch();
        let mut in_flight = inner.stream.begin();
        let position = inner.stream.allocate_marker(&mut batch)?;
        let mut recipients = BTreeSet::new();
        for ((user, device), content) in targets {
            let message = Message {
                sender: sender.to_owned(),
                kind: event_type.to_owned(),
                content,
            };
            batch.put(&inner.inbox, &(user.clone(), device, position), &message)?;
            recipients.insert(user);
        }
        inner.storage.commit(batch).await?;
        in_flight.changed(None, recipients.into_iter().collect());
        in_flight.done();
        Ok(())
    }

    /// `PUT /sendToDevice/{eventType}/{txnId}` (see the module docs).
    pub async fn send(&self, accounts: &Accounts, request: Send<'_>) -> Result<()> {
        let inner = &self.inner;
        let txn_key = (
            request.sender.to_owned(),
            request.sender_device.to_string(),
            format!(
                "sendToDevice {}:{}{}",
                request.event_type.len(),
                request.event_type,
                request.txn_id
            ),
        );
        let _lock = inner.lock_for(request.sender, request.sender_device).await;
        if inner.txns.contains(&txn_key)? {
            return Ok(());
        }
        let targets = resolve(accounts, request.messages)?;
        let mut batch = inner.storage.batch();
        let queued = self.queue_remote(&mut batch, accounts, &request)?;
        if targets.is_empty() {
            batch.put(&inner.txns, &txn_key, &0)?;
            inner.storage.commit(batch).await?;
            if let Some(sending) = inner.sending.get() {
                sending.wake(queued);
            }
            return Ok(());
        }
        let mut in_flight = inner.stream.begin();
        let position = inner.stream.allocate_marker(&mut batch)?;
        let mut recipients = BTreeSet::new();
        for ((user, device), content) in targets {
            let message = Message {
                sender: request.sender.to_owned(),
                kind: request.event_type.to_owned(),
                content,
            };
            batch.put(&inner.inbox, &(user.clone(), device, position), &message)?;
            recipients.insert(user);
        }
        batch.put(&inner.txns, &txn_key, &position)?;
        inner.storage.commit(batch).await?;
        if let Some(sending) = inner.sending.get() {
            sending.wake(queued);
        }
        in_flight.changed(None, recipients.into_iter().collect());
        in_flight.done();
        Ok(())
    }

    /// Stages one `m.direct_to_device` EDU per other server named in the
    /// request (nothing without federation: those messages are dropped).
    fn queue_remote(
        &self,
        batch: &mut crate::storage::Batch,
        accounts: &Accounts,
        request: &Send<'_>,
    ) -> Result<crate::sending::Queued> {
        let mut by_server: BTreeMap<ruma::OwnedServerName, Messages> = BTreeMap::new();
        for (user, by_device) in request.messages {
            if !accounts.is_local(user) {
                by_server
                    .entry(user.server_name().to_owned())
                    .or_default()
                    .insert(user.clone(), by_device.clone());
            }
        }
        let mut queued = crate::sending::Queued::default();
        if by_server.is_empty() {
            return Ok(queued);
        }
        let Some(sending) = self.inner.sending.get() else {
            tracing::info!("to-device messages for other servers dropped: federation is off");
            return Ok(queued);
        };
        // Unique per sending device and transaction: receivers may dedupe on it.
        let message_id = format!("{}-{}", request.sender_device, request.txn_id);
        for (server, messages) in by_server {
            let edu = serde_json::json!({
                "edu_type": "m.direct_to_device",
                "content": {
                    "sender": request.sender,
                    "type": request.event_type,
                    "message_id": message_id,
                    "messages": messages,
                },
            });
            let raw = serde_json::value::to_raw_value(&edu)
                .map(Raw::from_json)
                .map_err(|e| Error::internal(format!("encoding an EDU: {e}")))?;
            queued.merge(sending.queue_edu(batch, &server, &raw)?);
        }
        Ok(queued)
    }

    /// The `to_device` events of `device` for a sync over `(since, upto]`,
    /// after deleting the acknowledged ones (`<= since`), and the position
    /// the response must end at (`upto`, or lower when more than
    /// [`MAX_PER_SYNC`] are waiting). See the module docs.
    pub async fn for_sync(
        &self,
        user: &UserId,
        device: &DeviceId,
        since: Option<u64>,
        upto: u64,
    ) -> Result<(Vec<Raw<AnyToDeviceEvent>>, u64)> {
        let inner = &self.inner;
        let prefix = (user.to_owned(), device.to_owned());
        let mut acknowledged = inner.storage.batch();
        let mut events = Vec::new();
        let mut end = upto;
        for row in inner.inbox.iter_prefix(&prefix) {
            let ((_, _, position), message) = row?;
            if since.is_some_and(|since| position <= since) {
                acknowledged.delete(
                    &inner.inbox,
                    &(prefix.0.clone(), prefix.1.clone(), position),
                );
                continue;
            }
            if position > upto {
                break;
            }
            let raw = serde_json::value::to_raw_value(&message)
                .map_err(|e| Error::internal(format!("to-device message: {e}")))?;
            events.push(Raw::from_json(raw));
            if events.len() == MAX_PER_SYNC {
                end = position;
                break;
            }
        }
        inner.storage.commit(acknowledged).await?;
        Ok((events, end))
    }
}

impl ToDevice {
    /// Adds the deletion of `device`'s whole inbox to `batch` (the device is
    /// being deleted: nothing could ever fetch these messages).
    pub fn remove_inbox_into(
        &self,
        batch: &mut crate::storage::Batch,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<()> {
        let prefix = (user.to_owned(), device.to_owned());
        for row in self.inner.inbox.iter_prefix(&prefix) {
            let (key, _) = row?;
            batch.delete(&self.inner.inbox, &key);
        }
        Ok(())
    }
}

impl Inner {
    async fn lock_for(&self, user: &UserId, device: &DeviceId) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (user, device).hash(&mut hasher);
        let stripe = (hasher.finish() % LOCK_STRIPES as u64) as usize;
        self.locks[stripe].lock().await
    }
}

/// Which local device gets which content: `*` expands to the user's devices,
/// a named device wins over `*`; unknown users and devices are skipped, and
/// remote users are left to [`ToDevice::queue_remote`].
fn resolve(
    accounts: &Accounts,
    messages: &Messages,
) -> Result<BTreeMap<(OwnedUserId, OwnedDeviceId), Box<RawValue>>> {
    let mut targets = BTreeMap::new();
    for (user, by_device) in messages {
        if !accounts.is_local(user) {
            // Other servers' users: `ToDevice::queue_remote`.
            continue;
        }
        for (device, content) in by_device {
            let content = content.json();
            if !content.get().trim_start().starts_with('{') {
                return Err(Error::bad_json(
                    "to-device message content must be an object",
                ));
            }
            match device {
                DeviceIdOrAllDevices::AllDevices => {
                    for (device, _) in accounts.list_devices(user)? {
                        targets
                            .entry((user.clone(), device))
                            .or_insert_with(|| content.to_owned());
                    }
                }
                DeviceIdOrAllDevices::DeviceId(device) => {
                    if accounts.device(user, device)?.is_some() {
                        targets.insert((user.clone(), device.clone()), content.to_owned());
                    } else {
                        tracing::debug!(%user, %device, "to-device message for an unknown device");
                    }
                }
            }
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests;
