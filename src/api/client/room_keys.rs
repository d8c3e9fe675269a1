//! `/room_keys/*` (Client-Server API "End-to-End Encryption": "Server-side
//! key backups"): thin handlers; the logic is in `crate::e2ee`.

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::api::client::backup::{
    add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version,
    delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session,
    delete_backup_version, get_backup_info, get_backup_keys, get_backup_keys_for_room,
    get_backup_keys_for_session, get_latest_backup_info, update_backup_version,
};

use crate::{api::ruma::Ruma, error::Result, AppState};

pub async fn create_version(
    State(state): State<AppState>,
    request: Ruma<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response> {
    let session = request.session()?;
    let version = state
        .e2ee
        .create_backup(&session.user_id, &request.body.algorithm)
        .await?;
    Ok(create_backup_version::v3::Response::new(version))
}

pub async fn latest_version(
    State(state): State<AppState>,
    request: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response> {
    let session = request.session()?;
    let info = state.e2ee.backup_info(&session.user_id, None)?;
    Ok(get_latest_backup_info::v3::Response::new(
        info.algorithm,
        info.count,
        info.etag,
        info.version,
    ))
}

pub async fn get_version(
    State(state): State<AppState>,
    request: Ruma<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response> {
    let session = request.session()?;
    let info = state
        .e2ee
        .backup_info(&session.user_id, Some(&request.body.version))?;
    Ok(get_backup_info::v3::Response::new(
        info.algorithm,
        info.count,
        info.etag,
        info.version,
    ))
}

pub async fn update_version(
    State(state): State<AppState>,
    request: Ruma<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    state
        .e2ee
        .update_backup(&session.user_id, &body.version, &body.algorithm)
        .await?;
    Ok(update_backup_version::v3::Response::new())
}

pub async fn delete_version(
    State(state): State<AppState>,
    request: Ruma<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response> {
    let session = request.session()?;
    state
        .e2ee
        .delete_backup(&session.user_id, &request.body.version)
        .await?;
    Ok(delete_backup_version::v3::Response::new())
}

pub async fn put_keys(
    State(state): State<AppState>,
    request: Ruma<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    let keys = body
        .rooms
        .into_iter()
        .map(|(room, backup)| (room, backup.sessions))
        .collect();
    let done = state
        .e2ee
        .put_backup_keys(&session.user_id, &body.version, keys)
        .await?;
    Ok(add_backup_keys::v3::Response::new(done.etag, done.count))
}

pub async fn put_room_keys(
    State(state): State<AppState>,
    request: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    let keys = BTreeMap::from([(body.room_id, body.sessions)]);
    let done = state
        .e2ee
        .put_backup_keys(&session.user_id, &body.version, keys)
        .await?;
    Ok(add_backup_keys_for_room::v3::Response::new(
        done.etag, done.count,
    ))
}

pub async fn put_session_key(
    State(state): State<AppState>,
    request: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    let sessions = BTreeMap::from([(body.session_id, body.session_data)]);
    let keys = BTreeMap::from([(body.room_id, sessions)]);
    let done = state
        .e2ee
        .put_backup_keys(&session.user_id, &body.version, keys)
        .await?;
    Ok(add_backup_keys_for_session::v3::Response::new(
        done.etag, done.count,
    ))
}

pub async fn get_keys(
    State(state): State<AppState>,
    request: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response> {
    let session = request.session()?;
    let rooms = state
        .e2ee
        .backup_keys(&session.user_id, &request.body.version, None)?;
    Ok(get_backup_keys::v3::Response::new(rooms))
}

pub async fn get_room_keys(
    State(state): State<AppState>,
    request: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let mut rooms = state
        .e2ee
        .backup_keys(&session.user_id, &body.version, Some(&body.room_id))?;
    let sessions = rooms
        .remove(&body.room_id)
        .map(|room| room.sessions)
        .unwrap_or_default();
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

pub async fn get_session_key(
    State(state): State<AppState>,
    request: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let key = state.e2ee.backup_key(
        &session.user_id,
        &body.version,
        &body.room_id,
        &body.session_id,
    )?;
    Ok(get_backup_keys_for_session::v3::Response::new(key))
}

pub async fn delete_keys(
    State(state): State<AppState>,
    request: Ruma<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response> {
    let session = request.session()?;
    let done = state
        .e2ee
        .delete_backup_keys(&session.user_id, &request.body.version, None, None)
        .await?;
    Ok(delete_backup_keys::v3::Response::new(done.etag, done.count))
}

pub async fn delete_room_keys(
    State(state): State<AppState>,
    request: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let done = state
        .e2ee
        .delete_backup_keys(&session.user_id, &body.version, Some(&body.room_id), None)
        .await?;
    Ok(delete_backup_keys_for_room::v3::Response::new(
        done.etag, done.count,
    ))
}

pub async fn delete_session_key(
    State(state): State<AppState>,
    request: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let done = state
        .e2ee
        .delete_backup_keys(
            &session.user_id,
            &body.version,
            Some(&body.room_id),
            Some(&body.session_id),
        )
        .await?;
    Ok(delete_backup_keys_for_session::v3::Response::new(
        done.etag, done.count,
    ))
}
