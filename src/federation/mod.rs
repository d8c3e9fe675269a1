//! The server's side of federation: its federation client and key fetcher
//! (with keys cached in the database), checks on inbound requests and
//! PDUs, the inbound transaction pipeline (`inbound`), outbound joins and
//! leaves through resident servers (`membership`), and the transport the
//! sending queue delivers through (`transport`).
//!
//! The protocol itself (signing, discovery, the HTTP client) is in the
//! `feathur-federation` crate; the room rules are in `rooms`. This module
//! connects the two: nothing from another server reaches `rooms` before
//! its signatures and hashes were checked here.

mod edu;
mod inbound;
mod key_cache;
mod keys;
mod membership;
mod transport;

use std::sync::Arc;

use axum::http::StatusCode;
use feathur_federation::{
    ClientConfig, FederationClient, KeyFetchError, KeyFetcher, PduCheck, SigningKey,
};
use ruma::{
    api::error::ErrorKind, room_version_rules::RoomVersionRules, CanonicalJsonObject,
    CanonicalJsonValue, OwnedRoomId, OwnedServerName, RoomId, RoomVersionId, ServerName,
};
use serde_json::value::RawValue;

use crate::{
    config::Config,
    error::{Error, Result},
    rooms::{Pdu, Rooms},
    storage::{Storage, Table},
};

pub use edu::{share_read_receipt, share_typing, DeviceListShare, PresenceShare};
pub use inbound::{candidate_servers, EduSink, TransactionResults};
pub use key_cache::StoredKeyCache;
pub use transport::ClientTransport;

/// The federation service. Present only when `[federation] enabled`.
pub struct Federation {
    server_name: OwnedServerName,
    client: Arc<FederationClient>,
    keys: KeyFetcher<StoredKeyCache, Arc<FederationClient>>,
    signing_key: Arc<SigningKey>,
    txn_results: Table<(OwnedServerName, String), TransactionResults>,
    /// One inbound transaction per origin at a time: retries of the same
    /// transaction wait for the first and get its stored answer.
    txn_locks:
        parking_lot::Mutex<std::collections::HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>,
}

impl Federation {
    pub fn new(
        config: &Config,
        storage: &Arc<Storage>,
        signing_key: Arc<SigningKey>,
    ) -> anyhow::Result<Federation> {
        let mut client_config = ClientConfig::new(config.server_name.clone());
        client_config.verify_certificates = config.federation.verify_certificates;
        client_config.allow_private_ranges = config.federation.allow_private_ranges;
        let client = Arc::new(FederationClient::new(client_config, signing_key.clone())?);
        let keys = KeyFetcher::new(
            StoredKeyCache::new(storage),
            client.clone(),
            config.server_name.clone(),
            signing_key.public_key_set(),
        );
        Ok(Federation {
            server_name: config.server_name.clone(),
            client,
            keys,
            signing_key,
            txn_results: storage.table(crate::storage::Cf::OriginTxnIdResults),
            txn_locks: parking_lot::Mutex::new(Default::default()),
        })
    }

    pub fn client(&self) -> &Arc<FederationClient> {
        &self.client
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// Checks an inbound request's `X-Matrix` authorization (Server-Server
    /// API "Request Authentication") and returns the authenticated origin.
    pub async fn authenticate(
        &self,
        request: &axum::http::Request<&[u8]>,
    ) -> Result<OwnedServerName> {
        match self.keys.verify_request(request, &self.server_name).await {
            Ok(auth) => Ok(auth.origin),
            Err(e) => Err(Error::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::Unauthorized,
                format!("Request signature check failed: {e}"),
            )),
        }
    }

    /// Reads a PDU received for a room of version `version`: checks format,
    /// signatures and content hash (keeping the redacted form on a hash
    /// mismatch) and returns it with its event id. Errors say why it must
    /// be dropped.
    pub async fn verify_pdu(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        raw: &RawValue,
    ) -> std::result::Result<Pdu, String> {
        let rules = rules(version).map_err(|e| e.to_string())?;
        let json: CanonicalJsonObject =
            serde_json::from_str(raw.get()).map_err(|e| format!("not a PDU: {e}"))?;
        self.verify_pdu_json(room_id, &rules, json).await
    }

    /// [`Federation::verify_pdu`] for a join received through `send_join`:
    /// when it names one of our users in `join_authorised_via_users_server`
    /// (a restricted join we vouched for in `make_join`), our signature is
    /// added first, as the auth rules require it.
    pub async fn verify_join_countersigned(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        raw: &RawValue,
    ) -> std::result::Result<Pdu, String> {
        let rules = rules(version).map_err(|e| e.to_string())?;
        let mut json: CanonicalJsonObject =
            serde_json::from_str(raw.get()).map_err(|e| format!("not a PDU: {e}"))?;
        let authoriser = match json.get("content") {
            Some(CanonicalJsonValue::Object(content)) => content
                .get("join_authorised_via_users_server")
                .and_then(|v| v.as_str())
                .and_then(|u| ruma::UserId::parse(u).ok()),
            _ => None,
        };
        if authoriser.is_some_and(|u| u.server_name() == self.server_name) {
            json.remove("unsigned");
            self.signing_key
                .sign_json(self.server_name.as_str(), &mut json)
                .map_err(|e| format!("countersigning failed: {e}"))?;
        }
        self.verify_pdu_json(room_id, &rules, json).await
    }

    async fn verify_pdu_json(
        &self,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        mut json: CanonicalJsonObject,
    ) -> std::result::Result<Pdu, String> {
        // Received PDUs may carry `unsigned` (e.g. `age`): not ours to keep.
        json.remove("unsigned");
        let check = self
            .keys
            .verify_pdu(&json, rules)
            .await
            .map_err(|e| match e {
                KeyFetchError::Pdu(e) => format!("invalid PDU: {e}"),
                e => format!("signature check failed: {e}"),
            })?;
        let event_id =
            feathur_federation::event_id(&json, rules).map_err(|e| format!("invalid PDU: {e}"))?;
        if check == PduCheck::ContentHashMismatch {
            tracing::info!(%event_id, "content hash mismatch: keeping the redacted event");
            json = feathur_federation::redact_pdu(json, rules)
                .map_err(|e| format!("redacting failed: {e}"))?;
        }
        Pdu::from_json(event_id, room_id, json).map_err(|e| format!("invalid PDU: {e}"))
    }

    /// Signs a membership event built from a resident server's template
    /// (`make_join` / `make_leave`), filling in what the template leaves
    /// to us.
    fn sign_template(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        mut json: CanonicalJsonObject,
        content_extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Pdu> {
        let rules = rules(version)?;
        for field in ["event_id", "hashes", "signatures", "unsigned"] {
            json.remove(field);
        }
        json.insert(
            "origin_server_ts".to_owned(),
            CanonicalJsonValue::Integer(ruma::MilliSecondsSinceUnixEpoch::now().0.into()),
        );
        if json.contains_key("origin") {
            json.insert("origin".to_owned(), self.server_name.as_str().into());
        }
        if let Some(CanonicalJsonValue::Object(content)) = json.get_mut("content") {
            for (key, value) in content_extra {
                if let Ok(value) = CanonicalJsonValue::try_from(value) {
                    content.insert(key, value);
                }
            }
        }
        let event_id = feathur_federation::finalize_pdu(
            &self.signing_key,
            self.server_name.as_str(),
            &rules,
            &mut json,
        )
        .map_err(|e| Error::internal(format!("signing our membership event failed: {e}")))?;
        Pdu::from_json(event_id, room_id, json).map_err(|e| {
            Error::bad_gateway(format!("The resident server's template is invalid: {e}"))
        })
    }
}

impl Federation {
    /// Adds our signature to an event another server built for one of our
    /// users (an invite: "Inviting to a room").
    pub fn countersign(&self, room_id: &RoomId, version: &RoomVersionId, pdu: Pdu) -> Result<Pdu> {
        let _ = rules(version)?;
        let mut json = std::sync::Arc::unwrap_or_clone(pdu.json);
        self.signing_key
            .sign_json(self.server_name.as_str(), &mut json)
            .map_err(|e| Error::internal(format!("countersigning failed: {e}")))?;
        Pdu::from_json(pdu.event_id, room_id, json)
            .map_err(|e| Error::internal(format!("countersigned event unreadable: {e}")))
    }
}

impl Federation {
    /// As a notary: `server`'s key document, with our signature added
    /// ("Querying Keys Through Another Server"); ours for our own name.
    pub async fn notary_keys(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: Option<ruma::MilliSecondsSinceUnixEpoch>,
    ) -> Result<Option<ruma::serde::Raw<ruma::api::federation::discovery::ServerSigningKeys>>> {
        if server == self.server_name {
            let ours = crate::server_keys::published_keys(
                &self.signing_key,
                &self.server_name,
                ruma::MilliSecondsSinceUnixEpoch::now(),
            )?;
            return Ok(Some(ours));
        }
        let Some(raw) = self
            .keys
            .notary_response(server, minimum_valid_until_ts)
            .await
            .map_err(|e| Error::internal(format!("key cache: {e}")))?
        else {
            return Ok(None);
        };
        let mut object: CanonicalJsonObject = serde_json::from_str(raw.json().get())
            .map_err(|e| Error::internal(format!("a kept key document is unreadable: {e}")))?;
        self.signing_key
            .sign_json(self.server_name.as_str(), &mut object)
            .map_err(|e| Error::internal(format!("signing a key document failed: {e}")))?;
        serde_json::value::to_raw_value(&object)
            .map(|raw| Some(ruma::serde::Raw::from_json(raw)))
            .map_err(|e| Error::internal(e.to_string()))
    }
}

/// Whether `origin` may take part in `room_id` by its server ACL
/// (`m.room.server_acl`; Server-Server API "Server Access Control Lists").
pub fn check_acl(rooms: &Rooms, room_id: &RoomId, origin: &ServerName) -> Result<()> {
    let Some(acl) =
        rooms.current_state_event(room_id, &ruma::events::StateEventType::RoomServerAcl, "")?
    else {
        return Ok(());
    };
    let content: ruma::events::room::server_acl::RoomServerAclEventContent =
        match serde_json::from_str(acl.content.get()) {
            Ok(content) => content,
            // An unreadable ACL denies nobody (as other servers read it).
            Err(_) => return Ok(()),
        };
    if content.is_allowed(origin) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "Server {origin} is denied by the room's server ACL"
        )))
    }
}

fn rules(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version.rules().ok_or_else(|| {
        Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedRoomVersion,
            format!("Room version {version} is not supported"),
        )
    })
}

/// The room a received PDU names (`room_id`); `None` for a PDU without one.
pub fn room_id_of(raw: &RawValue) -> Option<OwnedRoomId> {
    #[derive(serde::Deserialize)]
    struct RoomOf {
        room_id: Option<OwnedRoomId>,
    }
    serde_json::from_str::<RoomOf>(raw.get()).ok()?.room_id
}
