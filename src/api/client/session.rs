//! Login and logout (Client-Server API: "Login", "Logout").

use axum::extract::State;
use ruma::api::client::{
    session::{
        get_login_types::{
            self,
            v3::{LoginType, PasswordLoginType},
        },
        login::{self, v3::LoginInfo},
        logout, logout_all,
    },
    uiaa::UserIdentifier,
};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

pub async fn login_types(
    State(_state): State<AppState>,
    _request: Ruma<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response> {
    Ok(get_login_types::v3::Response::new(vec![
        LoginType::Password(PasswordLoginType::new()),
    ]))
}

/// `POST /login` with `m.login.password` and an `m.id.user` identifier (or the
/// deprecated top-level `user`). Unknown users and wrong passwords both get
/// 403 `M_FORBIDDEN`.
pub async fn login(
    State(state): State<AppState>,
    request: Ruma<login::v3::Request>,
) -> Result<login::v3::Response> {
    let body = request.body;
    let LoginInfo::Password(password) = &body.login_info else {
        return Err(Error::new(
            axum::http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Unknown,
            "Only m.login.password is supported",
        ));
    };
    #[allow(deprecated)]
    let user = match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (None, Some(user)) => user.clone(),
        (Some(_), _) => return Err(Error::forbidden("Only m.id.user identifiers are supported")),
        (None, None) => return Err(Error::bad_json("Missing identifier")),
    };
    let user_id = state.accounts.local_user_id(&user)?;
    state
        .accounts
        .check_password(&user_id, &password.password)
        .await?;
    state.push.ensure_stored(&state.accounts, &user_id).await?;
    let ip = request.client_ip.map(|ip| ip.to_string());
    let logged_in = state
        .accounts
        .login(
            &user_id,
            body.device_id,
            body.initial_device_display_name,
            ip,
        )
        .await?;
    tracing::info!(%user_id, device_id = %logged_in.device_id, "logged in");
    Ok(login::v3::Response::new(
        user_id,
        logged_in.access_token,
        logged_in.device_id,
    ))
}

/// `POST /logout`: the token dies and its device is removed.
pub async fn logout(
    State(state): State<AppState>,
    request: Ruma<logout::v3::Request>,
) -> Result<logout::v3::Response> {
    let session = request.session()?;
    state
        .accounts
        .remove_devices(&session.user_id, std::slice::from_ref(&session.device_id))
        .await?;
    Ok(logout::v3::Response::new())
}

pub async fn logout_all(
    State(state): State<AppState>,
    request: Ruma<logout_all::v3::Request>,
) -> Result<logout_all::v3::Response> {
    let session = request.session()?;
    state.accounts.remove_all_devices(&session.user_id).await?;
    Ok(logout_all::v3::Response::new())
}
