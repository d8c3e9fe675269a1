//! The cache of other servers' verified signing keys: a trait the server
//! implements on its storage, and an in-memory version for tests and tools.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use ruma::api::federation::discovery::ServerSigningKeys;
use ruma::serde::{Base64, Raw};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};

use crate::dns::BoxError;

/// One verified public key of a server, as cached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedKey {
    /// The Ed25519 public key.
    pub key: Base64,
    /// For a current key, the lesser of its `valid_until_ts` and 7 days
    /// after it was fetched; for an old key, its `expired_ts`.
    pub valid_until_ts: MilliSecondsSinceUnixEpoch,
    /// It came from `old_verify_keys`: valid for events before
    /// `valid_until_ts`, never for requests.
    pub expired: bool,
}

/// A server's keys by key id (`ed25519:…`).
pub type ServerKeyMap = BTreeMap<String, CachedKey>;

/// Storage of verified keys, implemented by the server on its database.
pub trait KeyCache: Send + Sync {
    /// Every key cached for `server` (empty if none).
    fn get(
        &self,
        server: &ServerName,
    ) -> impl Future<Output = Result<ServerKeyMap, BoxError>> + Send;

    /// Inserts or replaces these keys of `server`, keeping its others (a
    /// key that moved to `old_verify_keys` replaces its current form).
    fn put(
        &self,
        server: &ServerName,
        keys: ServerKeyMap,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Keeps the last key document `server` itself served (checked and
    /// self-signed), so that this server can act as a notary for it. By
    /// default nothing is kept.
    fn put_response(
        &self,
        _server: &ServerName,
        _response: Raw<ServerSigningKeys>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// The document kept by [`KeyCache::put_response`].
    fn get_response(
        &self,
        _server: &ServerName,
    ) -> impl Future<Output = Result<Option<Raw<ServerSigningKeys>>, BoxError>> + Send {
        async { Ok(None) }
    }
}

/// A [`KeyCache`] in memory, for tests and tools.
#[derive(Debug, Default)]
pub struct MemoryKeyCache {
    servers: Mutex<HashMap<OwnedServerName, ServerKeyMap>>,
}

impl KeyCache for MemoryKeyCache {
    async fn get(&self, server: &ServerName) -> Result<ServerKeyMap, BoxError> {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(servers.get(server).cloned().unwrap_or_default())
    }

    async fn put(&self, server: &ServerName, keys: ServerKeyMap) -> Result<(), BoxError> {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.entry(server.to_owned()).or_default().extend(keys);
        Ok(())
    }
}

impl<T: KeyCache> KeyCache for Arc<T> {
    async fn get(&self, server: &ServerName) -> Result<ServerKeyMap, BoxError> {
        T::get(self, server).await
    }

    async fn put(&self, server: &ServerName, keys: ServerKeyMap) -> Result<(), BoxError> {
        T::put(self, server, keys).await
    }

    async fn put_response(
        &self,
        server: &ServerName,
        response: Raw<ServerSigningKeys>,
    ) -> Result<(), BoxError> {
        T::put_response(self, server, response).await
    }

    async fn get_response(
        &self,
        server: &ServerName,
    ) -> Result<Option<Raw<ServerSigningKeys>>, BoxError> {
        T::get_response(self, server).await
    }
}
