//! Account data, global and per room, and room tags (Client-Server API:
//! "Client Config", "Room tagging"). Only the owner reads or writes them.
//!
//! Every successful write wakes the owner's waiting `/sync` long-polls
//! ("Syncing": the server answers as soon as something for the user
//! exists); the sync stamps the change with a stream position when it
//! re-reads (`sync::account_data`), so the woken request returns it.

use axum::extract::State;
use ruma::{
    api::client::{
        config::{
            get_global_account_data, get_room_account_data, set_global_account_data,
            set_room_account_data,
        },
        tag::{create_tag, delete_tag, get_tags},
    },
    serde::Raw,
    OwnedUserId,
};
use serde_json::Value;

use crate::{
    accounts::Session,
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

fn own(session: &Session, user_id: &OwnedUserId) -> Result<()> {
    if &session.user_id != user_id {
        return Err(Error::forbidden(
            "You cannot access another user's account data",
        ));
    }
    Ok(())
}

fn content_of<T>(raw: &Raw<T>) -> Result<Value> {
    serde_json::from_str(raw.json().get())
        .map_err(|e| Error::bad_json(format!("Invalid account data: {e}")))
}

fn to_raw<T>(value: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("account data not serialisable: {e}")))
}

pub async fn get_global(
    State(state): State<AppState>,
    request: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response> {
    let body = &request.body;
    own(request.session()?, &body.user_id)?;
    let event_type = body.event_type.to_string();
    match state
        .accounts
        .global_account_data(&body.user_id, &event_type)?
    {
        Some(content) => Ok(get_global_account_data::v3::Response::new(to_raw(
            &content,
        )?)),
        None => Err(Error::not_found(format!(
            "No account data of type {event_type}"
        ))),
    }
}

pub async fn set_global(
    State(state): State<AppState>,
    request: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response> {
    let body = &request.body;
    own(request.session()?, &body.user_id)?;
    let content = content_of(&body.data)?;
    let event_type = body.event_type.to_string();
    state
        .accounts
        .set_global_account_data(&body.user_id, &event_type, content)
        .await?;
    Ok(set_global_account_data::v3::Response::new())
}

pub async fn get_room(
    State(state): State<AppState>,
    request: Ruma<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response> {
    let body = &request.body;
    own(request.session()?, &body.user_id)?;
    let event_type = body.event_type.to_string();
    match state
        .accounts
        .room_account_data(&body.user_id, &body.room_id, &event_type)?
    {
        Some(content) => Ok(get_room_account_data::v3::Response::new(to_raw(&content)?)),
        None => Err(Error::not_found(format!(
            "No account data of type {event_type}"
        ))),
    }
}

pub async fn set_room(
    State(state): State<AppState>,
    request: Ruma<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response> {
    let body = &request.body;
    own(request.session()?, &body.user_id)?;
    let content = content_of(&body.data)?;
    let event_type = body.event_type.to_string();
    state
        .accounts
        .set_room_account_data(&body.user_id, &body.room_id, &event_type, content)
        .await?;
    Ok(set_room_account_data::v3::Response::new())
}

pub async fn tags(
    State(state): State<AppState>,
    request: Ruma<get_tags::v3::Request>,
) -> Result<get_tags::v3::Response> {
    let body = &request.body;
    own(request.session()?, &body.user_id)?;
    let tags = state.accounts.room_tags(&body.user_id, &body.room_id)?;
    let tags = serde_json::from_value(Value::Object(tags))
        .map_err(|e| Error::internal(format!("stored tags unreadable: {e}")))?;
    Ok(get_tags::v3::Response::new(tags))
}

pub async fn put_tag(
    State(state): State<AppState>,
    request: Ruma<create_tag::v3::Request>,
) -> Result<create_tag::v3::Response> {
    let body = &request.body;
    own(request.session()?, &body.user_id)?;
    let info = serde_json::to_value(&body.tag_info)
        .map_err(|e| Error::bad_json(format!("Invalid tag: {e}")))?;
    state
        .accounts
        .set_room_tag(&body.user_id, &body.room_id, &body.tag, Some(info))
        .await?;
    Ok(create_tag::v3::Response::new())
}

pub async fn delete_tag(
    State(state): State<AppState>,
    request: Ruma<delete_tag::v3::Request>,
) -> Result<delete_tag::v3::Response> {
    let body = &request.body;
    own(request.session()?, &body.user_id)?;
    state
        .accounts
        .set_room_tag(&body.user_id, &body.room_id, &body.tag, None)
        .await?;
    Ok(delete_tag::v3::Response::new())
}
