//! Global account data (Client-Server API: "Client Config"): arbitrary JSON
//! objects a user's clients share, keyed by event type.

use ruma::OwnedUserId;

use super::Accounts;
use crate::error::{Error, Result};

/// Types the server manages itself; the spec forbids setting them through
/// `/account_data` (405 `M_BAD_JSON`).
const SERVER_MANAGED_TYPES: &[&str] = &["m.fully_read", "m.push_rules"];

impl Accounts {
    pub fn global_account_data(
        &self,
        user_id: &OwnedUserId,
        event_type: &str,
    ) -> Result<Option<serde_json::Value>> {
        Ok(self
            .account_data
            .get(&(user_id.clone(), event_type.to_owned()))?)
    }

    pub async fn set_global_account_data(
        &self,
        user_id: &OwnedUserId,
        event_type: &str,
        content: serde_json::Value,
    ) -> Result<()> {
        if SERVER_MANAGED_TYPES.contains(&event_type) {
            return Err(Error::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                ruma::api::error::ErrorKind::BadJson,
                format!("{event_type} cannot be set through the account data API"),
            ));
        }
        if !content.is_object() {
            return Err(Error::bad_json(
                "Account data content must be a JSON object",
            ));
        }
        let mut batch = self.storage.batch();
        batch.put(
            &self.account_data,
            &(user_id.clone(), event_type.to_owned()),
            &content,
        )?;
        self.storage.commit(batch).await?;
        Ok(())
    }
}
