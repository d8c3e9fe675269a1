//! Joining and leaving rooms through a resident server (Server-Server API
//! "Joining Rooms", "Leaving Rooms (Rejecting Invites)"), and resolving
//! remote room aliases ("Querying for information").

use ruma::{
    api::federation::{
        membership::{
            create_join_event, create_leave_event, prepare_join_event, prepare_leave_event,
        },
        query::get_room_information,
    },
    CanonicalJsonObject, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomId,
    RoomVersionId, UserId,
};

use super::Federation;
use crate::{
    error::{Error, Result},
    rooms::Rooms,
};

/// Largest `send_join` answer read (the whole state and auth chain of a
/// big room).
const MAX_SEND_JOIN_BYTES: usize = 256 * 1024 * 1024;

impl Federation {
    /// Joins `user_id` to `room_id` through the first of `servers` that
    /// lets us: `make_join` → sign → `send_join` → verify and store the
    /// state and auth chain → our join on top. `profile` goes into the
    /// member content (`displayname`, `avatar_url`).
    pub async fn join_remote(
        &self,
        rooms: &Rooms,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        profile: serde_json::Map<String, serde_json::Value>,
    ) -> Result<OwnedEventId> {
        if servers.is_empty() {
            return Err(Error::not_found(
                "No server to join this room through: give one with `via` or `server_name`",
            ));
        }
        let mut last_error = None;
        for server in servers {
            match self
                .join_through(rooms, user_id, room_id, server, profile.clone())
                .await
            {
                Ok(event_id) => return Ok(event_id),
                Err(e) => {
                    tracing::info!(%room_id, %server, "joining through {server} failed: {e}");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::not_found("No server could join us to the room")))
    }

    async fn join_through(
        &self,
        rooms: &Rooms,
        user_id: &UserId,
        room_id: &RoomId,
        server: &ruma::ServerName,
        profile: serde_json::Map<String, serde_json::Value>,
    ) -> Result<OwnedEventId> {
        let mut request =
            prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        request.ver = Rooms::supported_versions().to_vec();
        let template = self
            .client
            .send(server, request)
            .await
            .map_err(|e| remote_error("make_join", e))?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        if !Rooms::supported_versions().contains(&version) {
            return Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::IncompatibleRoomVersion(
                    ruma::api::error::IncompatibleRoomVersionErrorData::new(version.clone()),
                ),
                format!("The room is version {version}, which this server does not support"),
            ));
        }
        let json: CanonicalJsonObject = serde_json::from_str(template.event.get())
            .map_err(|e| Error::bad_gateway(format!("make_join answered an invalid event: {e}")))?;
        check_template(&json, user_id, "join")?;
        let join = self.sign_template(room_id, &version, json, profile)?;
        let raw = serde_json::value::to_raw_value(&*join.json)
            .map_err(|e| Error::internal(e.to_string()))?;
        let request =
            create_join_event::v2::Request::new(room_id.to_owned(), join.event_id.clone(), raw);
        let response = self
            .client
            .send_with_limit(server, request, MAX_SEND_JOIN_BYTES)
            .await
            .map_err(|e| remote_error("send_join", e))?;
        let answer = response.room_state;
        // A restricted join comes back signed by the authorising server too.
        let join = match &answer.event {
            Some(raw) => {
                let signed = self
                    .verify_pdu(room_id, &version, raw)
                    .await
                    .map_err(|e| Error::bad_gateway(format!("send_join event: {e}")))?;
                if signed.event_id != join.event_id {
                    return Err(Error::bad_gateway(
                        "send_join answered with a different event",
                    ));
                }
                signed
            }
            None => join,
        };
        self.store_outliers(rooms, room_id, &version, &answer.auth_chain)
            .await?;
        let state = self
            .store_outliers(rooms, room_id, &version, &answer.state)
            .await?;
        rooms
            .complete_remote_join(&version, join.clone(), &state)
            .await?;
        Ok(join.event_id)
    }

    /// Leaves (or rejects an invite to) a room this server is not in,
    /// through a resident server: `make_leave` → sign → `send_leave`.
    pub async fn leave_remote(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
    ) -> Result<(RoomVersionId, crate::rooms::Pdu)> {
        let mut last_error = None;
        for server in servers {
            let request =
                prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
            let template = match self.client.send(server, request).await {
                Ok(template) => template,
                Err(e) => {
                    last_error = Some(remote_error("make_leave", e));
                    continue;
                }
            };
            let version = template.room_version.unwrap_or(RoomVersionId::V1);
            let json: CanonicalJsonObject = serde_json::from_str(template.event.get())
                .map_err(|e| Error::bad_gateway(format!("make_leave: {e}")))?;
            check_template(&json, user_id, "leave")?;
            let leave = self.sign_template(room_id, &version, json, Default::default())?;
            let raw = serde_json::value::to_raw_value(&*leave.json)
                .map_err(|e| Error::internal(e.to_string()))?;
            let request = create_leave_event::v2::Request::new(
                room_id.to_owned(),
                leave.event_id.clone(),
                raw,
            );
            match self.client.send(server, request).await {
                Ok(_) => return Ok((version, leave)),
                Err(e) => last_error = Some(remote_error("send_leave", e)),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::not_found("No server to leave the room through")))
    }

    /// Invites another server's user: their server countersigns the invite
    /// (`/invite` v2), then it is stored and sent like any of our events.
    pub async fn invite_remote(
        &self,
        rooms: &Rooms,
        invite: crate::rooms::Pdu,
    ) -> Result<OwnedEventId> {
        let Some(info) = rooms.room_info(&invite.room_id)? else {
            return Err(Error::not_found("Unknown room"));
        };
        let Some(invitee) = invite
            .state_key
            .as_deref()
            .and_then(|k| UserId::parse(k).ok())
        else {
            return Err(Error::bad_json("An invite needs a user as state key"));
        };
        let raw = serde_json::value::to_raw_value(&*invite.json)
            .map_err(|e| Error::internal(e.to_string()))?;
        let stripped = rooms
            .stripped_state_pdus(&invite.room_id)?
            .into_iter()
            .filter_map(|p| serde_json::value::to_raw_value(&*p.json).ok())
            .map(ruma::api::federation::membership::RawStrippedState::Pdu)
            .collect();
        let request = ruma::api::federation::membership::create_invite::v2::Request::new(
            invite.room_id.clone(),
            invite.event_id.clone(),
            info.version.clone(),
            raw,
            stripped,
        );
        let response = self
            .client
            .send(invitee.server_name(), request)
            .await
            .map_err(|e| remote_error("invite", e))?;
        let signed = self
            .verify_pdu(&invite.room_id, &info.version, &response.event)
            .await
            .map_err(|e| Error::bad_gateway(format!("invite: {e}")))?;
        if signed.event_id != invite.event_id {
            return Err(Error::bad_gateway("The invited server changed the invite"));
        }
        match rooms.accept_remote(signed.clone(), None).await? {
            crate::rooms::Outcome::Accepted | crate::rooms::Outcome::AlreadyKnown => {}
            crate::rooms::Outcome::SoftFailed(reason) | crate::rooms::Outcome::Rejected(reason) => {
                return Err(Error::forbidden(reason));
            }
        }
        let mut servers = rooms.servers_in_room(&invite.room_id)?;
        servers.push(invitee.server_name().to_owned());
        servers.retain(|s| s != &self.server_name);
        servers.dedup();
        rooms.forward_to_servers(&signed.event_id, &servers).await?;
        Ok(signed.event_id)
    }

    /// A remote alias's room and the servers to join it through.
    pub async fn resolve_alias(
        &self,
        alias: &OwnedRoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let request = get_room_information::v1::Request::new(alias.clone());
        let response = self
            .client
            .send(alias.server_name(), request)
            .await
            .map_err(|e| match e {
                feathur_federation::ClientError::Server(e) if e.status_code.as_u16() == 404 => {
                    Error::not_found(format!("Room alias {alias} not found"))
                }
                e => remote_error("query/directory", e),
            })?;
        let mut servers = response.servers;
        if !servers.iter().any(|s| s == alias.server_name()) {
            servers.push(alias.server_name().to_owned());
        }
        Ok((response.room_id, servers))
    }
}

/// A template must be the membership event we asked for, for our user.
fn check_template(json: &CanonicalJsonObject, user_id: &UserId, membership: &str) -> Result<()> {
    let field = |name: &str| json.get(name).and_then(|v| v.as_str());
    let content_membership = match json.get("content") {
        Some(ruma::CanonicalJsonValue::Object(c)) => c.get("membership").and_then(|v| v.as_str()),
        _ => None,
    };
    if field("type") != Some("m.room.member")
        || field("sender") != Some(user_id.as_str())
        || field("state_key") != Some(user_id.as_str())
        || content_membership != Some(membership)
    {
        return Err(Error::bad_gateway(format!(
            "The resident server's make_{membership} template is not a {membership} of {user_id}"
        )));
    }
    Ok(())
}

/// A failed request to another server, as the client sees it: the remote
/// Matrix error where it answered one (e.g. 403 for a room we may not
/// join), otherwise 502.
fn remote_error(what: &str, error: feathur_federation::ClientError) -> Error {
    use ruma::api::error::ErrorBody;
    if let feathur_federation::ClientError::Server(e) = &error {
        let status = e.status_code;
        if let ErrorBody::Standard(body) = &e.body {
            let message = body.message.clone();
            if status.is_client_error() {
                return Error::new(status, body.kind.clone(), format!("{what}: {message}"));
            }
        }
    }
    Error::bad_gateway(format!("{what} failed: {error}"))
}

impl Federation {
    /// Fetches up to `limit` events of the room's history from before the
    /// oldest one we hold (`backfill` from a server in the room), verifies
    /// them, stores them as outliers and appends them to the room's history.
    /// Returns how many were added (0: nothing older, or no server answered).
    pub async fn backfill(&self, rooms: &Rooms, room_id: &RoomId, limit: u32) -> Result<usize> {
        let Some(frontier) = rooms.history_frontier(room_id)? else {
            return Ok(0);
        };
        let Some(info) = rooms.room_info(room_id)? else {
            return Ok(0);
        };
        let servers: Vec<OwnedServerName> = rooms
            .servers_in_room(room_id)?
            .into_iter()
            .filter(|s| *s != self.server_name)
            .collect();
        for server in servers {
            let request = ruma::api::federation::backfill::get_backfill::v1::Request::new(
                room_id.to_owned(),
                vec![frontier.clone()],
                ruma::UInt::from(limit),
            );
            let response = match self.client.send(&server, request).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::info!(%room_id, %server, "backfill failed: {e}");
                    continue;
                }
            };
            let mut fresh = Vec::new();
            for raw in &response.pdus {
                match self.verify_pdu(room_id, &info.version, raw).await {
                    Ok(pdu) if !rooms.knows_event(&pdu.event_id)? => fresh.push(pdu),
                    Ok(_) => {}
                    Err(reason) => tracing::info!(%room_id, %reason, "dropped a backfilled event"),
                }
            }
            fresh.sort_by_key(|p| p.depth);
            let mut stored = Vec::with_capacity(fresh.len());
            for pdu in fresh {
                if !rooms.unknown_auth_events(&pdu)?.is_empty() {
                    if let Err(e) = self
                        .fetch_auth_events(rooms, &server, &info.version, &pdu)
                        .await
                    {
                        tracing::info!(%room_id, "auth events of a backfilled event: {e}");
                        continue;
                    }
                }
                if rooms
                    .store_outlier(&info.version, pdu.clone())
                    .await?
                    .is_none()
                {
                    stored.push(pdu);
                }
            }
            return rooms.append_history(room_id, stored).await;
        }
        Ok(0)
    }
}

impl Federation {
    /// Another server's public room directory (`POST publicRooms`), for a
    /// client's `/publicRooms?server=`.
    pub async fn public_rooms(
        &self,
        server: &ruma::ServerName,
        limit: Option<ruma::UInt>,
        since: Option<String>,
        filter: ruma::directory::Filter,
        network: ruma::directory::RoomNetwork,
    ) -> Result<ruma::api::federation::directory::get_public_rooms_filtered::v1::Response> {
        let mut request =
            ruma::api::federation::directory::get_public_rooms_filtered::v1::Request::new();
        request.limit = limit;
        request.since = since;
        request.filter = filter;
        request.room_network = network;
        self.client
            .send(server, request)
            .await
            .map_err(|e| remote_error("publicRooms", e))
    }
}

impl Federation {
    /// Knocks on a room this server is not in, through a resident server
    /// (`make_knock` → sign → `send_knock`, Server-Server API "Knocking
    /// upon a room"). Returns the signed knock and the room's stripped
    /// state as the resident server sent it (for the knocker's `/sync`).
    pub async fn knock_remote(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        content: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(RoomVersionId, crate::rooms::Pdu, Vec<serde_json::Value>)> {
        use ruma::api::federation::membership::{create_knock_event, prepare_knock_event};
        let mut last_error = None;
        for server in servers {
            let mut request =
                prepare_knock_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
            request.ver = Rooms::supported_versions().to_vec();
            let template = match self.client.send(server, request).await {
                Ok(template) => template,
                Err(e) => {
                    last_error = Some(remote_error("make_knock", e));
                    continue;
                }
            };
            let version = template.room_version;
            let json: CanonicalJsonObject = serde_json::from_str(template.event.get())
                .map_err(|e| Error::bad_gateway(format!("make_knock: {e}")))?;
            check_template(&json, user_id, "knock")?;
            let knock = self.sign_template(room_id, &version, json, content.clone())?;
            let raw = serde_json::value::to_raw_value(&*knock.json)
                .map_err(|e| Error::internal(e.to_string()))?;
            let request = create_knock_event::v1::Request::new(
                room_id.to_owned(),
                knock.event_id.clone(),
                raw,
            );
            match self.client.send(server, request).await {
                Ok(answer) => {
                    let stripped = answer
                        .knock_room_state
                        .iter()
                        .filter_map(|s| serde_json::to_value(s).ok())
                        .collect();
                    return Ok((version, knock, stripped));
                }
                Err(e) => last_error = Some(remote_error("send_knock", e)),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::not_found("No server to knock through")))
    }
}

impl Federation {
    /// Another server's user's profile (`query/profile`), all fields or one.
    pub async fn remote_profile(
        &self,
        user_id: &UserId,
        field: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        use ruma::api::federation::query::get_profile_information::v1 as profile;
        let mut request = profile::Request::new(user_id.to_owned());
        request.field = field.map(Into::into);
        let response = self
            .client
            .send(user_id.server_name(), request)
            .await
            .map_err(|e| match e {
                feathur_federation::ClientError::Server(e) if e.status_code.as_u16() == 404 => {
                    Error::not_found(format!("No profile for {user_id}"))
                }
                e => remote_error("query/profile", e),
            })?;
        Ok(response
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
