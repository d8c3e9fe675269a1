//! Registration and account management handlers (Client-Server API: "Account
//! registration and management").

use axum::{extract::State, http::StatusCode};
use ruma::api::{
    client::{
        account::{
            change_password, check_registration_token_validity, deactivate,
            get_username_availability, register, whoami, ThirdPartyIdRemovalStatus,
        },
        uiaa::{AuthFlow, AuthType},
    },
    error::ErrorKind,
};

use crate::{
    accounts::{uia::Purpose, NewAccount},
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

/// `POST /register`: username checks first (so a taken name is reported before
/// any auth stage), then user-interactive auth, then the account and a device.
pub async fn register(
    State(state): State<AppState>,
    request: Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    let body = request.body;
    if body.kind == register::RegistrationKind::Guest {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            ErrorKind::GuestAccessForbidden,
            "Guest access is not enabled on this server",
        ));
    }
    let accounts = &state.accounts;
    let user_id = match &body.username {
        Some(name) => accounts.check_username(name)?,
        None => accounts.generate_localpart()?,
    };
    let Some(flows) = accounts.registration_flows()? else {
        return Err(Error::forbidden("Registration is disabled on this server"));
    };
    let completed = accounts
        .authorize(Purpose::Register, None, flows, body.auth.as_ref())
        .await?;

    let new = NewAccount {
        user_id,
        password: body.password,
        admin: false,
    };
    let user_id = accounts
        .create_account(new, completed.registration_token.as_deref())
        .await?;
    state.push.ensure_stored(accounts, &user_id).await?;

    let mut response = register::v3::Response::new(user_id.clone());
    if !body.inhibit_login {
        let ip = request.client_ip.map(|ip| ip.to_string());
        let logged_in = accounts
            .login(
                &user_id,
                body.device_id,
                body.initial_device_display_name,
                ip,
            )
            .await?;
        response.access_token = Some(logged_in.access_token);
        response.device_id = Some(logged_in.device_id);
    }
    Ok(response)
}

pub async fn username_available(
    State(state): State<AppState>,
    request: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    state.accounts.check_username(&request.body.username)?;
    Ok(get_username_availability::v3::Response::new(true))
}

pub async fn registration_token_validity(
    State(state): State<AppState>,
    request: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response> {
    let valid = state
        .accounts
        .registration_token_valid(&request.body.token)?;
    Ok(check_registration_token_validity::v1::Response::new(valid))
}

pub async fn whoami(
    State(_state): State<AppState>,
    request: Ruma<whoami::v3::Request>,
) -> Result<whoami::v3::Response> {
    let session = request.session()?;
    let mut response = whoami::v3::Response::new(session.user_id.clone(), false);
    response.device_id = Some(session.device_id.clone());
    Ok(response)
}

fn password_flows() -> Vec<AuthFlow> {
    vec![AuthFlow::new(vec![AuthType::Password])]
}

/// `POST /account/password`. Needs an access token here: password resets by
/// e-mail are not offered, so there is no unauthenticated flow.
pub async fn change_password(
    State(state): State<AppState>,
    request: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    state
        .accounts
        .authorize(
            Purpose::ChangePassword,
            Some(&session.user_id),
            password_flows(),
            body.auth.as_ref(),
        )
        .await?;
    state
        .accounts
        .set_password(
            &session.user_id,
            &body.new_password,
            body.logout_devices,
            Some(&session.device_id),
        )
        .await?;
    Ok(change_password::v3::Response::new())
}

pub async fn deactivate(
    State(state): State<AppState>,
    request: Ruma<deactivate::v3::Request>,
) -> Result<deactivate::v3::Response> {
    let session = request.session()?;
    state
        .accounts
        .authorize(
            Purpose::Deactivate,
            Some(&session.user_id),
            password_flows(),
            request.body.auth.as_ref(),
        )
        .await?;
    state.accounts.deactivate(&session.user_id).await?;
    Ok(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    ))
}
