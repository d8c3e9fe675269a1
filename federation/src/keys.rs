//! Other servers' signing keys: fetching, checking, caching, and verifying
//! requests, events and signed JSON with them (Server-Server API,
//! "Retrieving server keys", "Querying Keys Through Another Server"; room
//! version 5+ "Signing key validity period").
//!
//! Keys come from the server itself (`GET /_matrix/key/v2/server`), or, if
//! that fails or lacks the key, from configured notaries (`POST
//! /_matrix/key/v2/query`). Every answer must be self-signed by the server
//! it describes and name it; a notary's answer must also carry the
//! notary's signature. Verified keys go into a [`KeyCache`] that the server
//! implements on its storage.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ruma::api::federation::discovery::get_remote_server_keys_batch::v2 as batch;
use ruma::api::federation::discovery::{get_server_keys, ServerSigningKeys};
use ruma::room_version_rules::RoomVersionRules;
use ruma::serde::Raw;
use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName,
    ServerName, UInt,
};

use crate::client::FederationClient;
use crate::dns::BoxError;
pub use crate::key_cache::{CachedKey, KeyCache, MemoryKeyCache, ServerKeyMap};
use crate::xmatrix::{self, XMatrix, XMatrixError};
use crate::{verify_pdu, verify_server_json, PduCheck, PduError, VerifyError};

/// Keys are trusted at most this far past the time they were fetched,
/// whatever their `valid_until_ts` says ("the lesser of `valid_until_ts`
/// and 7 days into the future").
pub const MAX_KEY_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default minimum time between two network fetches of one server's keys,
/// so unknown key ids cannot make us flood a server ("Requesting servers
/// should limit how frequently they query for certificates").
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The two key endpoints, as a trait so tests can serve them without a
/// network; [`FederationClient`] implements it.
pub trait KeyServer: Send + Sync {
    /// `GET /_matrix/key/v2/server` on `server`.
    fn server_keys(
        &self,
        server: &ServerName,
    ) -> impl Future<Output = Result<Raw<ServerSigningKeys>, BoxError>> + Send;

    /// `POST /_matrix/key/v2/query` on `notary`.
    fn notary_query(
        &self,
        notary: &ServerName,
        request: batch::Request,
    ) -> impl Future<Output = Result<Vec<Raw<ServerSigningKeys>>, BoxError>> + Send;
}

impl KeyServer for FederationClient {
    async fn server_keys(&self, server: &ServerName) -> Result<Raw<ServerSigningKeys>, BoxError> {
        let request = get_server_keys::v2::Request::new();
        Ok(self.send(server, request).await?.server_key)
    }

    async fn notary_query(
        &self,
        notary: &ServerName,
        request: batch::Request,
    ) -> Result<Vec<Raw<ServerSigningKeys>>, BoxError> {
        Ok(self.send(notary, request).await?.server_keys)
    }
}

impl<T: KeyServer> KeyServer for Arc<T> {
    async fn server_keys(&self, server: &ServerName) -> Result<Raw<ServerSigningKeys>, BoxError> {
        T::server_keys(self, server).await
    }

    async fn notary_query(
        &self,
        notary: &ServerName,
        request: batch::Request,
    ) -> Result<Vec<Raw<ServerSigningKeys>>, BoxError> {
        T::notary_query(self, notary, request).await
    }
}

/// A notary ("trusted key server") to ask for keys a server does not
/// serve itself.
#[derive(Clone, Debug)]
pub struct Notary {
    /// The notary's server name.
    pub server_name: OwnedServerName,
    /// Its keys if configured; otherwise fetched from it directly.
    pub verify_keys: Option<PublicKeySet>,
}

/// What a key is needed for, which decides whether a cached key will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    /// Checking an `X-Matrix` request now: only current keys, valid now.
    Request,
    /// Checking a signature made at `ts` (an event's `origin_server_ts`).
    /// Without `enforce_validity` (room versions 1–4) any known key will do.
    Signed {
        /// When the object was signed.
        ts: MilliSecondsSinceUnixEpoch,
        /// The room version's `enforce_key_validity`.
        enforce_validity: bool,
    },
}

/// Failure to obtain keys or to verify with them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFetchError {
    /// The key cache failed.
    #[error("key cache: {0}")]
    Cache(BoxError),
    /// No usable key could be found for the server.
    #[error("no usable key {key_ids:?} for {server}")]
    NotFound {
        /// The server whose keys were wanted.
        server: OwnedServerName,
        /// The key ids wanted.
        key_ids: Vec<String>,
    },
    /// The object carries no `ed25519` signature from a server that must
    /// have signed it.
    #[error("not signed by {0}")]
    Unsigned(OwnedServerName),
    /// A key response failed its checks.
    #[error("invalid key response: {0}")]
    Invalid(String),
    /// The request's `X-Matrix` authorization is missing, malformed or wrong.
    #[error(transparent)]
    XMatrix(#[from] XMatrixError),
    /// The PDU is malformed or its signatures do not verify.
    #[error(transparent)]
    Pdu(#[from] PduError),
    /// The signed JSON object does not verify.
    #[error(transparent)]
    Json(#[from] VerifyError),
}

/// Fetches and caches keys; verifies requests, PDUs and signed JSON.
pub struct KeyFetcher<C, S> {
    cache: C,
    server: S,
    local_name: OwnedServerName,
    local_keys: PublicKeySet,
    notaries: Vec<Notary>,
    refetch_interval: Duration,
    /// Per server: serialises fetches and remembers the last attempt.
    attempts: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

impl<C: KeyCache, S: KeyServer> KeyFetcher<C, S> {
    /// A fetcher that answers for `local_name` with `local_keys` (our own,
    /// never fetched) and asks other servers through `server`.
    pub fn new(cache: C, server: S, local_name: OwnedServerName, local_keys: PublicKeySet) -> Self {
        KeyFetcher {
            cache,
            server,
            local_name,
            local_keys,
            notaries: Vec::new(),
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Notaries to ask, in order, when a server does not give a key itself.
    pub fn with_notaries(mut self, notaries: Vec<Notary>) -> Self {
        self.notaries = notaries;
        self
    }

    /// Minimum time between network fetches for one server.
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The cache, e.g. to seed or inspect it.
    pub fn cache(&self) -> &C {
        &self.cache
    }

    /// The keys among `key_ids` of `server` that are usable for `usage`,
    /// fetching when the cache lacks any. Fails if none is usable.
    pub async fn keys_for(
        &self,
        server: &ServerName,
        key_ids: &[String],
        usage: KeyUse,
    ) -> Result<PublicKeySet, KeyFetchError> {
        let now = MilliSecondsSinceUnixEpoch::now();
        if server == self.local_name {
            let keys = select(&self.local_keys, key_ids);
            return non_empty(keys, server, key_ids);
        }
        let cached = self.cache.get(server).await.map_err(KeyFetchError::Cache)?;
        if all_usable(&cached, key_ids, usage, now) {
            return non_empty(usable(&cached, key_ids, usage, now), server, key_ids);
        }

        let lock = self.attempt_lock(server);
        let mut last_attempt = lock.lock().await;
        // Another task may have fetched while we waited.
        let mut known = self.cache.get(server).await.map_err(KeyFetchError::Cache)?;
        let recently = last_attempt.is_some_and(|at| at.elapsed() < self.refetch_interval);
        if !all_usable(&known, key_ids, usage, now) && !recently {
            *last_attempt = Some(Instant::now());
            self.fetch(server, key_ids, usage, now, &mut known).await?;
        }
        non_empty(usable(&known, key_ids, usage, now), server, key_ids)
    }

    /// Direct fetch, then each notary until the keys are usable; every
    /// verified answer is cached and merged into `known`.
    async fn fetch(
        &self,
        server: &ServerName,
        key_ids: &[String],
        usage: KeyUse,
        now: MilliSecondsSinceUnixEpoch,
        known: &mut ServerKeyMap,
    ) -> Result<(), KeyFetchError> {
        match self.fetch_direct(server, now).await {
            Ok(keys) => self.store(server, keys, known).await?,
            Err(e) => tracing::debug!(%server, error = %e, "fetching server keys directly failed"),
        }
        let minimum_valid_until_ts = match usage {
            KeyUse::Request => now,
            KeyUse::Signed { ts, .. } => ts,
        };
        for notary in &self.notaries {
            if all_usable(known, key_ids, usage, now) {
                break;
            }
            match self
                .fetch_via_notary(notary, server, key_ids, minimum_valid_until_ts, now)
                .await
            {
                Ok(keys) => self.store(server, keys, known).await?,
                Err(e) => tracing::debug!(
                    %server, notary = %notary.server_name, error = %e,
                    "fetching server keys through notary failed"
                ),
            }
        }
        Ok(())
    }

    async fn store(
        &self,
        server: &ServerName,
        keys: ServerKeyMap,
        known: &mut ServerKeyMap,
    ) -> Result<(), KeyFetchError> {
        self.cache
            .put(server, keys.clone())
            .await
            .map_err(KeyFetchError::Cache)?;
        known.extend(keys);
        Ok(())
    }

    async fn fetch_direct(
        &self,
        server: &ServerName,
        now: MilliSecondsSinceUnixEpoch,
    ) -> Result<ServerKeyMap, KeyFetchError> {
        let raw = self
            .server
            .server_keys(server)
            .await
            .map_err(|e| KeyFetchError::Invalid(e.to_string()))?;
        let keys = check_key_response(&raw, server, now)?.1;
        self.cache
            .put_response(server, raw)
            .await
            .map_err(KeyFetchError::Cache)?;
        Ok(keys)
    }

    /// As a notary ("Querying Keys Through Another Server"): the key
    /// document `server` served us, fetched anew when none is kept or the
    /// kept one expires before `minimum_valid_until_ts`. `None` when the
    /// server cannot be reached and nothing is kept.
    pub async fn notary_response(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<Option<Raw<ServerSigningKeys>>, KeyFetchError> {
        let kept = self
            .cache
            .get_response(server)
            .await
            .map_err(KeyFetchError::Cache)?;
        let fresh_enough = |raw: &Raw<ServerSigningKeys>| {
            let valid_until = raw
                .get_field::<MilliSecondsSinceUnixEpoch>("valid_until_ts")
                .ok()
                .flatten();
            match (valid_until, minimum_valid_until_ts) {
                (Some(until), Some(minimum)) => until >= minimum,
                (Some(until), None) => until >= MilliSecondsSinceUnixEpoch::now(),
                (None, _) => false,
            }
        };
        if let Some(raw) = kept.as_ref().filter(|raw| fresh_enough(raw)) {
            return Ok(Some(raw.clone()));
        }
        let lock = self.attempt_lock(server);
        let mut last_attempt = lock.lock().await;
        let recently = last_attempt.is_some_and(|at| at.elapsed() < self.refetch_interval);
        if !recently {
            *last_attempt = Some(Instant::now());
            let mut known = self.cache.get(server).await.map_err(KeyFetchError::Cache)?;
            match self
                .fetch_direct(server, MilliSecondsSinceUnixEpoch::now())
                .await
            {
                Ok(keys) => self.store(server, keys, &mut known).await?,
                Err(e) => tracing::debug!(%server, error = %e, "notary fetch failed"),
            }
        }
        self.cache
            .get_response(server)
            .await
            .map_err(KeyFetchError::Cache)
    }

    async fn fetch_via_notary(
        &self,
        notary: &Notary,
        server: &ServerName,
        key_ids: &[String],
        minimum_valid_until_ts: MilliSecondsSinceUnixEpoch,
        now: MilliSecondsSinceUnixEpoch,
    ) -> Result<ServerKeyMap, KeyFetchError> {
        let notary_keys = match &notary.verify_keys {
            Some(keys) => keys.clone(),
            None => self.current_keys(&notary.server_name, now).await?,
        };
        let mut criteria = batch::QueryCriteria::new();
        criteria.minimum_valid_until_ts = Some(minimum_valid_until_ts);
        let wanted = key_ids
            .iter()
            .filter_map(|id| Some((id.as_str().try_into().ok()?, criteria.clone())))
            .collect();
        let request = batch::Request::new(BTreeMap::from([(server.to_owned(), wanted)]));
        let answers = self
            .server
            .notary_query(&notary.server_name, request)
            .await
            .map_err(|e| KeyFetchError::Invalid(e.to_string()))?;
        let mut keys = ServerKeyMap::new();
        for raw in &answers {
            let checked = check_key_response(raw, server, now).and_then(|(object, found)| {
                verify_server_json(notary.server_name.as_str(), &notary_keys, &object)?;
                Ok(found)
            });
            match checked {
                Ok(found) => keys.extend(found),
                Err(e) => tracing::debug!(%server, error = %e, "notary answer refused"),
            }
        }
        if keys.is_empty() {
            return Err(KeyFetchError::Invalid(
                "no valid answer from notary".to_owned(),
            ));
        }
        Ok(keys)
    }

    /// A server's current keys valid now (a notary's, to check its answers).
    async fn current_keys(
        &self,
        server: &ServerName,
        now: MilliSecondsSinceUnixEpoch,
    ) -> Result<PublicKeySet, KeyFetchError> {
        let mut known = self.cache.get(server).await.map_err(KeyFetchError::Cache)?;
        let current = |known: &ServerKeyMap| -> Vec<String> {
            known
                .iter()
                .filter(|(_, k)| is_usable(k, KeyUse::Request, now))
                .map(|(id, _)| id.clone())
                .collect()
        };
        if current(&known).is_empty() {
            let keys = self.fetch_direct(server, now).await?;
            self.store(server, keys, &mut known).await?;
        }
        let ids = current(&known);
        non_empty(usable(&known, &ids, KeyUse::Request, now), server, &ids)
    }

    fn attempt_lock(&self, server: &ServerName) -> Arc<tokio::sync::Mutex<Option<Instant>>> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        attempts.entry(server.to_owned()).or_default().clone()
    }

    /// Verifies an incoming request's `X-Matrix` authorization with the
    /// origin's current key, fetched if needed, and returns it (its
    /// `origin` is the authenticated server).
    pub async fn verify_request<T: AsRef<[u8]>>(
        &self,
        request: &http::Request<T>,
        our_name: &ServerName,
    ) -> Result<XMatrix, KeyFetchError> {
        let auth = xmatrix::parse_authorization(request.headers())?;
        let key_ids = [auth.key.to_string()];
        let keys = self
            .keys_for(&auth.origin, &key_ids, KeyUse::Request)
            .await?;
        xmatrix::verify_request(&auth, request, our_name, &keys)?;
        Ok(auth)
    }

    /// Verifies a received PDU's signatures with the keys of every server
    /// that must have signed it, valid at its `origin_server_ts` under the
    /// room version's rules, then its content hash ("Validating hashes and
    /// signatures on received events").
    pub async fn verify_pdu(
        &self,
        pdu: &CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<PduCheck, KeyFetchError> {
        let servers =
            ruma::signatures::required_server_signatures_to_verify_event(pdu, &rules.signatures)
                .map_err(PduError::from)?;
        let ts = match pdu.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts))
                .map(|ms| MilliSecondsSinceUnixEpoch(UInt::new_saturating(ms)))
                .map_err(|_| PduError::Format("negative `origin_server_ts`".to_owned()))?,
            _ => return Err(PduError::Format("missing `origin_server_ts`".to_owned()).into()),
        };
        let usage = KeyUse::Signed {
            ts,
            enforce_validity: rules.enforce_key_validity,
        };
        let mut keys = PublicKeyMap::new();
        for server in servers {
            let key_ids = signature_key_ids(pdu, &server);
            if key_ids.is_empty() {
                return Err(KeyFetchError::Unsigned(server));
            }
            keys.insert(
                server.to_string(),
                self.keys_for(&server, &key_ids, usage).await?,
            );
        }
        Ok(verify_pdu(pdu, &keys, rules)?)
    }

    /// Verifies that `server` signed `object` with a key usable for `usage`
    /// (e.g. a third-party invite's `signed` block, a notary answer).
    pub async fn verify_json(
        &self,
        server: &ServerName,
        object: &CanonicalJsonObject,
        usage: KeyUse,
    ) -> Result<(), KeyFetchError> {
        let key_ids = signature_key_ids(object, server);
        if key_ids.is_empty() {
            return Err(KeyFetchError::Unsigned(server.to_owned()));
        }
        let keys = self.keys_for(server, &key_ids, usage).await?;
        Ok(verify_server_json(server.as_str(), &keys, object)?)
    }
}

/// Checks a key document: it parses, names `server`, and is signed by
/// `server` with its own `verify_keys`. Returns the canonical object (for
/// a notary's signature check) and the keys to cache, current keys capped
/// at 7 days from `now`.
fn check_key_response(
    raw: &Raw<ServerSigningKeys>,
    server: &ServerName,
    now: MilliSecondsSinceUnixEpoch,
) -> Result<(CanonicalJsonObject, ServerKeyMap), KeyFetchError> {
    let invalid = |e: &dyn std::fmt::Display| KeyFetchError::Invalid(e.to_string());
    let object: CanonicalJsonObject =
        serde_json::from_str(raw.json().get()).map_err(|e| invalid(&e))?;
    let keys = raw.deserialize().map_err(|e| invalid(&e))?;
    if keys.server_name != server {
        return Err(KeyFetchError::Invalid(format!(
            "keys for {} returned when asking for {server}",
            keys.server_name
        )));
    }
    let self_keys: PublicKeySet = keys
        .verify_keys
        .iter()
        .map(|(id, key)| (id.to_string(), key.key.clone()))
        .collect();
    verify_server_json(server.as_str(), &self_keys, &object)?;

    let cap = u64::from(now.get()).saturating_add(MAX_KEY_VALIDITY.as_millis() as u64);
    let valid_until = u64::from(keys.valid_until_ts.get()).min(cap);
    let mut map = ServerKeyMap::new();
    for (id, old) in keys.old_verify_keys {
        let cached = CachedKey {
            key: old.key,
            valid_until_ts: old.expired_ts,
            expired: true,
        };
        map.insert(id.to_string(), cached);
    }
    for (id, key) in keys.verify_keys {
        let cached = CachedKey {
            key: key.key,
            valid_until_ts: MilliSecondsSinceUnixEpoch(UInt::new_saturating(valid_until)),
            expired: false,
        };
        map.insert(id.to_string(), cached);
    }
    Ok((object, map))
}

fn is_usable(key: &CachedKey, usage: KeyUse, now: MilliSecondsSinceUnixEpoch) -> bool {
    match usage {
        KeyUse::Request => !key.expired && key.valid_until_ts >= now,
        KeyUse::Signed {
            enforce_validity: false,
            ..
        } => true,
        KeyUse::Signed { ts, .. } => key.valid_until_ts >= ts,
    }
}

fn all_usable(
    known: &ServerKeyMap,
    key_ids: &[String],
    usage: KeyUse,
    now: MilliSecondsSinceUnixEpoch,
) -> bool {
    !key_ids.is_empty()
        && key_ids
            .iter()
            .all(|id| known.get(id).is_some_and(|k| is_usable(k, usage, now)))
}

fn usable(
    known: &ServerKeyMap,
    key_ids: &[String],
    usage: KeyUse,
    now: MilliSecondsSinceUnixEpoch,
) -> PublicKeySet {
    key_ids
        .iter()
        .filter_map(|id| Some((id, known.get(id)?)))
        .filter(|(_, k)| is_usable(k, usage, now))
        .map(|(id, k)| (id.clone(), k.key.clone()))
        .collect()
}

fn select(keys: &PublicKeySet, key_ids: &[String]) -> PublicKeySet {
    keys.iter()
        .filter(|(id, _)| key_ids.contains(id))
        .map(|(id, k)| (id.clone(), k.clone()))
        .collect()
}

fn non_empty(
    keys: PublicKeySet,
    server: &ServerName,
    key_ids: &[String],
) -> Result<PublicKeySet, KeyFetchError> {
    if keys.is_empty() {
        Err(KeyFetchError::NotFound {
            server: server.to_owned(),
            key_ids: key_ids.to_vec(),
        })
    } else {
        Ok(keys)
    }
}

/// The `ed25519:` key ids `server` signed `object` with.
fn signature_key_ids(object: &CanonicalJsonObject, server: &ServerName) -> Vec<String> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Vec::new();
    };
    let Some(CanonicalJsonValue::Object(by_server)) = signatures.get(server.as_str()) else {
        return Vec::new();
    };
    by_server
        .keys()
        .filter(|id| id.starts_with("ed25519:"))
        .cloned()
        .collect()
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
