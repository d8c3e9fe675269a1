//! Profiles (Client-Server API: "Profiles").

use axum::extract::State;
use ruma::{
    api::client::profile::{
        delete_profile_field, get_profile, get_profile_field, set_profile_field,
    },
    profile::{ProfileFieldValue, UserProfile},
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

/// A local user's profile, or another server's user's through
/// `query/profile` when federation is on.
async fn profile_of(
    state: &AppState,
    user_id: &ruma::OwnedUserId,
    field: Option<&str>,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
    match &state.federation {
        Some(federation) if !state.accounts.is_local(user_id) => Ok(federation
            .remote_profile(user_id, field)
            .await?
            .into_iter()
            .collect()),
        _ => state.accounts.profile(user_id),
    }
}

pub async fn get_profile(
    State(state): State<AppState>,
    request: Ruma<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response> {
    let profile = profile_of(&state, &request.body.user_id, None).await?;
    let mut response = get_profile::v3::Response::new();
    response.data = profile.into_iter().collect::<UserProfile>();
    Ok(response)
}

pub async fn get_field(
    State(state): State<AppState>,
    request: Ruma<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response> {
    let body = request.body;
    let profile = profile_of(&state, &body.user_id, Some(body.field.as_str())).await?;
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
