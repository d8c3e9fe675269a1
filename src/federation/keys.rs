//! Other servers' users' E2EE keys, asked of their servers (Server-Server
//! API "End-to-End Encryption": `user/keys/query`, `user/keys/claim`), one
//! request per server, all servers at once. A server that fails is named in
//! the answer's `failures`, as the Client-Server API asks.

use std::{collections::BTreeMap, time::Duration};

use feathur_federation::client::FederationAuth;
use futures_util::future::join_all;
use ruma::{
    api::{
        client::keys::{claim_keys, get_keys},
        federation::keys::{claim_keys as fed_claim, get_keys as fed_get},
        path_builder::SinglePath,
        Metadata, OutgoingRequest,
    },
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId,
};
use serde_json::{json, Value};

use super::Federation;

/// How long a client's key request waits for other servers.
const REMOTE_KEYS_TIMEOUT: Duration = Duration::from_secs(10);

fn by_server<V: Clone>(
    wanted: &BTreeMap<OwnedUserId, V>,
) -> BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> {
    let mut out: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> = BTreeMap::new();
    for (user, value) in wanted {
        out.entry(user.server_name().to_owned())
            .or_default()
            .insert(user.clone(), value.clone());
    }
    out
}

fn failure(error: impl std::fmt::Display) -> Value {
    json!({ "status": 503, "message": format!("The server could not be reached: {error}") })
}

impl Federation {
    /// Sends `request(users)` to each server of `wanted`'s users, all at
    /// once, each within [`REMOTE_KEYS_TIMEOUT`]; a failure is already in
    /// the form the client answer's `failures` takes.
    async fn ask_servers<V, R>(
        &self,
        wanted: &BTreeMap<OwnedUserId, V>,
        request: impl Fn(BTreeMap<OwnedUserId, V>) -> R,
    ) -> Vec<(OwnedServerName, Result<R::IncomingResponse, Value>)>
    where
        V: Clone,
        R: OutgoingRequest<EndpointError = ruma::api::error::Error>
            + Metadata<PathBuilder = SinglePath>,
        R::Authentication: FederationAuth,
    {
        let requests = by_server(wanted).into_iter().map(|(server, users)| {
            let request = request(users);
            async move {
                let answer =
                    tokio::time::timeout(REMOTE_KEYS_TIMEOUT, self.client.send(&server, request))
                        .await;
                let answer = match answer {
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(e)) => Err(failure(e)),
                    Err(_) => Err(failure("timed out")),
                };
                (server, answer)
            }
        });
        join_all(requests).await
    }

    /// Adds the keys of `wanted` (all remote users) to `response`.
    pub async fn query_remote_keys(
        &self,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        response: &mut get_keys::v3::Response,
    ) {
        for (server, answer) in self.ask_servers(wanted, fed_get::v1::Request::new).await {
            match answer {
                Ok(answer) => {
                    response.device_keys.extend(answer.device_keys);
                    response.master_keys.extend(answer.master_keys);
                    response.self_signing_keys.extend(answer.self_signing_keys);
                }
                Err(failure) => {
                    response.failures.insert(server.to_string(), failure);
                }
            }
        }
    }

    /// Claims one-time keys of remote users into `response`.
    pub async fn claim_remote_keys(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
        response: &mut claim_keys::v3::Response,
    ) {
        for (server, answer) in self.ask_servers(wanted, fed_claim::v1::Request::new).await {
            match answer {
                Ok(answer) => response.one_time_keys.extend(answer.one_time_keys),
                Err(failure) => {
                    response.failures.insert(server.to_string(), failure);
                }
            }
        }
    }
}
