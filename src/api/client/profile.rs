//! Profiles and global account data (Client-Server API: "Profiles", "Client Config").

use axum::extract::State;
use ruma::{
    api::client::{
        config::{get_global_account_data, set_global_account_data},
        profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field},
    },
    profile::{ProfileFieldValue, UserProfile},
    serde::Raw,
    OwnedUserId,
};

use crate::{
    accounts::Session,
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

fn own_user(session: &Session, user_id: &OwnedUserId, what: &str) -> Result<()> {
    if &session.user_id != user_id {
        return Err(Error::forbidden(format!(
            "You cannot change another user's {what}"
        )));
    }
    Ok(())
}

pub async fn get_profile(
    State(state): State<AppState>,
    request: Ruma<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response> {
    let profile = state.accounts.profile(&request.body.user_id)?;
    let mut response = get_profile::v3::Response::new();
    response.data = profile.into_iter().collect::<UserProfile>();
    Ok(response)
}

pub async fn get_field(
    State(state): State<AppState>,
    request: Ruma<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response> {
    let body = request.body;
    let profile = state.accounts.profile(&body.user_id)?;
    let name = body.field.as_str();
    let Some(value) = profile.get(name) else {
        return Err(Error::not_found(format!("The profile has no {name}")));
    };
    let value = ProfileFieldValue::new(name, value.clone())
        .map_err(|e| Error::internal(format!("stored profile field {name} is invalid: {e}")))?;
    Ok(get_profile_field::v3::Response::new(value))
}

pub async fn set_field(
    State(state): State<AppState>,
    request: Ruma<set_profile_field::v3::Request>,
) -> Result<set_profile_field::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    own_user(session, &body.user_id, "profile")?;
    let name = body.value.field_name();
    let value = body.value.value().into_owned();
    state
        .accounts
        .set_profile_field(&body.user_id, name.as_str(), Some(value))
        .await?;
    Ok(set_profile_field::v3::Response::new())
}

pub async fn delete_field(
    State(state): State<AppState>,
    request: Ruma<delete_profile_field::v3::Request>,
) -> Result<delete_profile_field::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    own_user(session, &body.user_id, "profile")?;
    state
        .accounts
        .set_profile_field(&body.user_id, body.field.as_str(), None)
        .await?;
    Ok(delete_profile_field::v3::Response::new())
}

pub async fn get_account_data(
    State(state): State<AppState>,
    request: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    if session.user_id != body.user_id {
        return Err(Error::forbidden(
            "You cannot read another user's account data",
        ));
    }
    let event_type = body.event_type.to_string();
    let Some(content) = state
        .accounts
        .global_account_data(&body.user_id, &event_type)?
    else {
        return Err(Error::not_found(format!(
            "No account data of type {event_type}"
        )));
    };
    let raw = serde_json::value::to_raw_value(&content)
        .map_err(|e| Error::internal(format!("account data not serialisable: {e}")))?;
    Ok(get_global_account_data::v3::Response::new(Raw::from_json(
        raw,
    )))
}

pub async fn set_account_data(
    State(state): State<AppState>,
    request: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    own_user(session, &body.user_id, "account data")?;
    let content: serde_json::Value = serde_json::from_str(body.data.json().get())
        .map_err(|e| Error::bad_json(format!("Invalid account data: {e}")))?;
    state
        .accounts
        .set_global_account_data(&body.user_id, &body.event_type.to_string(), content)
        .await?;
    Ok(set_global_account_data::v3::Response::new())
}
