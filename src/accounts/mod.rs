//! Users, passwords, devices, access tokens, profiles and global account data
//! (Client-Server API: "Account registration and management", "Login",
//! "Device management", "Profiles", "Client config").
//!
//! Tables (key → value):
//! - `userid_account`: user id → [`Account`] (kept after deactivation so the id is never reused)
//! - `userdeviceid_device`: (user id, device id) → [`Device`]
//! - `tokenhash_session`: SHA-256 of an access token → [`Session`]; the token itself is never stored
//! - `userdeviceid_tokenhash`: (user id, device id) → token hash, to revoke a device's token
//! - `userid_profile`: user id → profile fields (`displayname`, `avatar_url`, custom keys)
//! - `useridtype_accountdata`: (user id, event type) → content
//! - `userroomidtype_accountdata`: (user id, room id, event type) → content (incl. `m.tag`)
//! - `registrationtoken_info`: registration token → [`RegistrationTokenInfo`]

mod account_data;
mod devices;
mod password;
mod profile;
mod register;
mod tokens;
pub mod uia;

use std::sync::Arc;

use ruma::{OwnedDeviceId, OwnedRoomId, OwnedServerName, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    error::{Error, Result},
    storage::{Batch, Cf, Storage, Table},
};

pub use self::{
    register::{NewAccount, RegistrationTokenInfo},
    tokens::TokenHash,
};

/// Who made a request: the owner of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// argon2id PHC string; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    pub created_ts: u64,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub deactivated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    pub display_name: Option<String>,
    pub created_ts: u64,
    pub last_seen_ts: Option<u64>,
    pub last_seen_ip: Option<String>,
}

/// The accounts domain. Cheap to share: every field is a handle.
pub struct Accounts {
    storage: Arc<Storage>,
    server_name: OwnedServerName,
    registration_open: bool,
    config_tokens: Vec<String>,
    accounts: Table<OwnedUserId, Account>,
    devices: Table<(OwnedUserId, OwnedDeviceId), Device>,
    sessions: Table<[u8; 32], Session>,
    device_tokens: Table<(OwnedUserId, OwnedDeviceId), TokenHash>,
    profiles: Table<OwnedUserId, profile::Profile>,
    account_data: Table<(OwnedUserId, String), serde_json::Value>,
    room_account_data: Table<(OwnedUserId, OwnedRoomId, String), serde_json::Value>,
    registration_tokens: Table<String, RegistrationTokenInfo>,
    /// Serialises the check-then-create of user ids and token use counts.
    registration_lock: tokio::sync::Mutex<()>,
    /// Serialises read-modify-write of account data (room tags).
    account_data_lock: tokio::sync::Mutex<()>,
    uia: uia::UiaSessions,
    hasher: password::Hasher,
    /// Told after every account data write (set once at start-up).
    account_data_listener: std::sync::OnceLock<Arc<dyn AccountDataListener>>,
    /// Removes per-device data kept elsewhere (set once at start-up).
    device_removal_listener: std::sync::OnceLock<Arc<dyn DeviceRemovalListener>>,
}

/// Whoever must hear of account data changes — `/sync`, to wake the owner's
/// long-polls. A trait here so that `accounts` does not depend on `sync`.
pub trait AccountDataListener: Send + Sync {
    fn account_data_changed(&self, user_id: &UserId);
}

/// Whoever keeps per-device data outside `accounts` — end-to-end keys and
/// to-device inboxes (`e2ee`). A trait here so that `accounts` depends on
/// neither. Every device removal (delete, logout, password change,
/// deactivation) goes through it.
pub trait DeviceRemovalListener: Send + Sync {
    /// Adds the removal of the devices' data to `batch`, the batch that also
    /// removes the devices (one atomic change). The returned value is told
    /// once that batch has committed; dropping it means the batch did not.
    fn removing(
        &self,
        batch: &mut Batch,
        user_id: &UserId,
        devices: &[OwnedDeviceId],
    ) -> Result<Box<dyn DevicesRemoved>>;
}

/// The after-commit half of a [`DeviceRemovalListener::removing`] call.
pub trait DevicesRemoved: Send {
    fn committed(self: Box<Self>);
}

impl Accounts {
    pub fn new(storage: Arc<Storage>, config: &Config) -> Accounts {
        Accounts {
            server_name: config.server_name.clone(),
            registration_open: config.registration_open(),
            config_tokens: config.registration.tokens.clone(),
            accounts: storage.table(Cf::UserIdAccount),
            devices: storage.table(Cf::UserDeviceIdDevice),
            sessions: storage.table(Cf::TokenHashSession),
            device_tokens: storage.table(Cf::UserDeviceIdTokenHash),
            profiles: storage.table(Cf::UserIdProfile),
            account_data: storage.table(Cf::UserIdTypeAccountData),
            room_account_data: storage.table(Cf::UserRoomIdTypeAccountData),
            registration_tokens: storage.table(Cf::RegistrationTokenInfo),
            registration_lock: tokio::sync::Mutex::new(()),
            account_data_lock: tokio::sync::Mutex::new(()),
            uia: uia::UiaSessions::default(),
            hasher: password::Hasher::for_this_machine(),
            account_data_listener: std::sync::OnceLock::new(),
            device_removal_listener: std::sync::OnceLock::new(),
            storage,
        }
    }

    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }

    pub fn account(&self, user_id: &OwnedUserId) -> Result<Option<Account>> {
        Ok(self.accounts.get(user_id)?)
    }

    /// Whether a local user exists (deactivated users still exist).
    pub fn exists(&self, user_id: &OwnedUserId) -> Result<bool> {
        Ok(self.accounts.contains(user_id)?)
    }

    /// Only local users have accounts here.
    pub fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
    }

    /// The caller for an access token, or `None` if the token is unknown or revoked.
    pub fn session_for_token(&self, token: &str) -> Result<Option<Session>> {
        Ok(self.sessions.get(&TokenHash::of(token).0)?)
    }

    /// Parses what a client typed as a user (`alice` or `@alice:server`) into a
    /// local user id.
    pub fn local_user_id(&self, user: &str) -> Result<OwnedUserId> {
        let parsed = if user.starts_with('@') {
            UserId::parse(user).ok()
        } else {
            UserId::parse_with_server_name(user.to_lowercase(), &self.server_name).ok()
        };
        match parsed {
            Some(id) if self.is_local(&id) => Ok(id),
            _ => Err(Error::forbidden("Invalid username or password")),
        }
    }

    /// Verifies a password off the async runtime (argon2 is deliberately slow).
    /// Wrong password, unknown user and password-less accounts are indistinguishable.
    pub async fn check_password(&self, user_id: &OwnedUserId, password: &str) -> Result<Account> {
        let account = self.accounts.get(user_id)?;
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        let valid = self.hasher.verify(password.to_owned(), hash).await?;
        match account {
            Some(account) if valid => {
                if account.deactivated {
                    return Err(Error::new(
                        axum::http::StatusCode::FORBIDDEN,
                        ruma::api::error::ErrorKind::UserDeactivated,
                        "This account has been deactivated",
                    ));
                }
                Ok(account)
            }
            _ => Err(Error::forbidden("Invalid username or password")),
        }
    }

    /// Sets a new password. With `logout_devices`, every device but `keep` is
    /// logged out (the spec's default for `/account/password`).
    pub async fn set_password(
        &self,
        user_id: &OwnedUserId,
        new_password: &str,
        logout_devices: bool,
        keep: Option<&OwnedDeviceId>,
    ) -> Result<()> {
        let Some(mut account) = self.accounts.get(user_id)? else {
            return Err(Error::not_found("No such user"));
        };
        account.password_hash = Some(self.hasher.hash(new_password.to_owned()).await?);
        let mut batch = self.storage.batch();
        batch.put(&self.accounts, user_id, &account)?;
        let mut removed = Vec::new();
        if logout_devices {
            for (device_id, _) in self.list_devices(user_id)? {
                if Some(&device_id) != keep {
                    self.remove_device_into(&mut batch, user_id, &device_id)?;
                    removed.push(device_id);
                }
            }
        }
        let hook = self.devices_removing(&mut batch, user_id, &removed)?;
        self.storage.commit(batch).await?;
        if let Some(hook) = hook {
            hook.committed();
        }
        Ok(())
    }

    /// Deactivation: the account stays (its id is never given out again), but it
    /// loses every device and token and its profile. The password hash is kept so
    /// that a login with the right password learns `M_USER_DEACTIVATED` rather
    /// than a bare `M_FORBIDDEN`; it can never yield a session again.
    pub async fn deactivate(&self, user_id: &OwnedUserId) -> Result<()> {
        let Some(mut account) = self.accounts.get(user_id)? else {
            return Err(Error::not_found("No such user"));
        };
        account.deactivated = true;
        let mut batch = self.storage.batch();
        batch.put(&self.accounts, user_id, &account)?;
        let mut removed = Vec::new();
        for (device_id, _) in self.list_devices(user_id)? {
            self.remove_device_into(&mut batch, user_id, &device_id)?;
            removed.push(device_id);
        }
        batch.delete(&self.profiles, user_id);
        let hook = self.devices_removing(&mut batch, user_id, &removed)?;
        self.storage.commit(batch).await?;
        if let Some(hook) = hook {
            hook.committed();
        }
        Ok(())
    }

    /// Sets who hears of account data changes; only the first call counts.
    pub fn set_account_data_listener(&self, listener: Arc<dyn AccountDataListener>) {
        let _ = self.account_data_listener.set(listener);
    }

    /// Sets who removes per-device data kept elsewhere; only the first call counts.
    pub fn set_device_removal_listener(&self, listener: Arc<dyn DeviceRemovalListener>) {
        let _ = self.device_removal_listener.set(listener);
    }

    /// Lets the [`DeviceRemovalListener`] add its part to `batch`.
    fn devices_removing(
        &self,
        batch: &mut Batch,
        user_id: &UserId,
        devices: &[OwnedDeviceId],
    ) -> Result<Option<Box<dyn DevicesRemoved>>> {
        match self.device_removal_listener.get() {
            Some(listener) if !devices.is_empty() => {
                listener.removing(batch, user_id, devices).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn account_data_changed(&self, user_id: &UserId) {
        if let Some(listener) = self.account_data_listener.get() {
            listener.account_data_changed(user_id);
        }
    }

    pub fn uia(&self) -> &uia::UiaSessions {
        &self.uia
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A password for operators who did not choose one: 144 random bits.
pub fn random_password() -> String {
    tokens::random_string(18)
}
