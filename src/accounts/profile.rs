//! Profiles (Client-Server API: "Profiles", with the extended profile fields of
//! v1.16): a JSON object per user; `displayname` and `avatar_url` are two of its keys.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use ruma::{api::error::ErrorKind, OwnedUserId};

use super::Accounts;
use crate::error::{Error, Result};

pub type Profile = BTreeMap<String, serde_json::Value>;

/// The spec's cap on a whole profile, serialised.
const MAX_PROFILE_BYTES: usize = 64 * 1024;

impl Accounts {
    /// A local user's profile; 404 `M_NOT_FOUND` for users that do not exist.
    pub fn profile(&self, user_id: &OwnedUserId) -> Result<Profile> {
        if !self.is_local(user_id) {
            return Err(Error::not_found(
                "Profiles of other servers' users need federation, which is not enabled here",
            ));
        }
        match self.accounts.get(user_id)? {
            Some(account) if !account.deactivated => {
                Ok(self.profiles.get(user_id)?.unwrap_or_default())
            }
            _ => Err(Error::not_found("No such user")),
        }
    }

    /// Sets (`Some`) or removes (`None`) one profile field of a local user.
    pub async fn set_profile_field(
        &self,
        user_id: &OwnedUserId,
        field: &str,
        value: Option<serde_json::Value>,
    ) -> Result<()> {
        if field.len() > 255 {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::KeyTooLarge,
                "Profile field names are at most 255 bytes",
            ));
        }
        let mut profile = self.profile(user_id)?;
        match value {
            Some(value) => profile.insert(field.to_owned(), value),
            None => profile.remove(field),
        };
        let size = serde_json::to_vec(&profile)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PROFILE_BYTES {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::ProfileTooLarge,
                "The profile would be larger than 64 KiB",
            ));
        }
        let mut batch = self.storage.batch();
        batch.put(&self.profiles, user_id, &profile)?;
        self.storage.commit(batch).await?;
        Ok(())
    }
}
