//! Account creation and registration tokens (Client-Server API: "Account
//! registration", "Token-authenticated registration").

use axum::http::StatusCode;
use ruma::{
    api::{client::uiaa::AuthFlow, client::uiaa::AuthType, error::ErrorKind},
    OwnedUserId, UserId,
};
use serde::{Deserialize, Serialize};

use super::{now_ms, tokens::random_string, Account, Accounts};
use crate::{
    config::is_valid_registration_token,
    error::{Error, Result},
};

/// A registration token made with `feathur token create`: limited uses and an expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationTokenInfo {
    /// `None`: unlimited.
    pub uses_allowed: Option<u64>,
    pub completed: u64,
    /// Milliseconds since the epoch; `None`: never expires.
    pub expiry_time: Option<u64>,
}

impl RegistrationTokenInfo {
    fn usable(&self, now: u64) -> bool {
        self.uses_allowed.is_none_or(|n| self.completed < n)
            && self.expiry_time.is_none_or(|t| now < t)
    }
}

pub struct NewAccount {
    pub user_id: OwnedUserId,
    pub password: Option<String>,
    pub admin: bool,
}

impl Accounts {
    /// The user id a registration for `localpart` would get, or the spec's error:
    /// 400 `M_INVALID_USERNAME` for a bad localpart, 400 `M_USER_IN_USE` when taken.
    pub fn check_username(&self, localpart: &str) -> Result<OwnedUserId> {
        let user_id = self.parse_new_localpart(localpart)?;
        if self.exists(&user_id)? {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::UserInUse,
                "This user id is already taken",
            ));
        }
        Ok(user_id)
    }

    /// New user ids use the spec's current grammar (lower case, `a-z0-9._=-/+`)
    /// and fit in 255 bytes with the server name.
    fn parse_new_localpart(&self, localpart: &str) -> Result<OwnedUserId> {
        let invalid = |why: &str| {
            Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidUsername,
                why.to_owned(),
            )
        };
        if localpart.is_empty() {
            return Err(invalid("The username must not be empty"));
        }
        if !localpart.bytes().all(
            |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'),
        ) {
            return Err(invalid(
                "The username may only contain lower-case letters, digits and ._=-/+",
            ));
        }
        let user_id = UserId::parse_with_server_name(localpart, &self.server_name)
            .map_err(|_| invalid("The username is not valid"))?;
        if user_id.as_str().len() > 255 {
            return Err(invalid("The user id would be longer than 255 bytes"));
        }
        Ok(user_id)
    }

    /// A random free localpart for registrations that name none.
    pub fn generate_localpart(&self) -> Result<OwnedUserId> {
        loop {
            let candidate = random_string(9).to_lowercase().replace(['_', '-'], "x");
            let user_id = self.parse_new_localpart(&format!("u{candidate}"))?;
            if !self.exists(&user_id)? {
                return Ok(user_id);
            }
        }
    }

    /// Creates an account; consumes one use of `registration_token` in the same
    /// durable batch. Taken ids and used-up tokens are re-checked under a lock so
    /// that concurrent registrations cannot both win.
    pub async fn create_account(
        &self,
        new: NewAccount,
        registration_token: Option<&str>,
    ) -> Result<OwnedUserId> {
        let password_hash = match new.password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        let _guard = self.registration_lock.lock().await;
        if self.exists(&new.user_id)? {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::UserInUse,
                "This user id is already taken",
            ));
        }
        let mut batch = self.storage.batch();
        if let Some(token) = registration_token {
            if !self.config_tokens.iter().any(|t| t == token) {
                let now = now_ms();
                match self.registration_tokens.get(&token.to_owned())? {
                    Some(mut info) if info.usable(now) => {
                        info.completed += 1;
                        batch.put(&self.registration_tokens, &token.to_owned(), &info)?;
                    }
                    _ => {
                        return Err(Error::new(
                            StatusCode::UNAUTHORIZED,
                            ErrorKind::Unauthorized,
                            "The registration token is no longer valid",
                        ))
                    }
                }
            }
        }
        let account = Account {
            password_hash,
            created_ts: now_ms(),
            admin: new.admin,
            deactivated: false,
        };
        batch.put(&self.accounts, &new.user_id, &account)?;
        self.storage.commit(batch).await?;
        tracing::info!(user_id = %new.user_id, "account created");
        Ok(new.user_id)
    }

    /// The UIA flows `/register` offers now: dummy when registration is open,
    /// a token flow when any token could be valid. `None`: registration is closed.
    pub fn registration_flows(&self) -> Result<Option<Vec<AuthFlow>>> {
        let mut flows = Vec::new();
        if self.registration_open {
            flows.push(AuthFlow::new(vec![AuthType::Dummy]));
        }
        if self.token_registration_enabled()? {
            flows.push(AuthFlow::new(vec![AuthType::RegistrationToken]));
        }
        Ok((!flows.is_empty()).then_some(flows))
    }

    fn token_registration_enabled(&self) -> Result<bool> {
        if !self.config_tokens.is_empty() {
            return Ok(true);
        }
        let now = now_ms();
        for row in self.registration_tokens.iter() {
            if row?.1.usable(now) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `GET /register/m.login.registration_token/validity`.
    pub fn registration_token_valid(&self, token: &str) -> Result<bool> {
        if !is_valid_registration_token(token) {
            return Ok(false);
        }
        if self.config_tokens.iter().any(|t| t == token) {
            return Ok(true);
        }
        Ok(self
            .registration_tokens
            .get(&token.to_owned())?
            .is_some_and(|i| i.usable(now_ms())))
    }

    /// Creates a registration token (random unless given).
    pub async fn create_registration_token(
        &self,
        token: Option<String>,
        uses_allowed: Option<u64>,
        expiry_time: Option<u64>,
    ) -> Result<String> {
        let token = token.unwrap_or_else(|| random_string(12).replace(['-', '_'], "x"));
        if !is_valid_registration_token(&token) {
            return Err(Error::invalid_param(
                "Registration tokens are 1-64 of [A-Za-z0-9._~-]",
            ));
        }
        let info = RegistrationTokenInfo {
            uses_allowed,
            completed: 0,
            expiry_time,
        };
        let mut batch = self.storage.batch();
        batch.put(&self.registration_tokens, &token, &info)?;
        self.storage.commit(batch).await?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::RegistrationTokenInfo;

    #[test]
    fn token_usability() {
        let t = RegistrationTokenInfo {
            uses_allowed: Some(1),
            completed: 0,
            expiry_time: None,
        };
        assert!(t.usable(0));
        let used = RegistrationTokenInfo {
            completed: 1,
            ..t.clone()
        };
        assert!(!used.usable(0));
        let expired = RegistrationTokenInfo {
            expiry_time: Some(10),
            ..t
        };
        assert!(expired.usable(9) && !expired.usable(10));
    }
}
