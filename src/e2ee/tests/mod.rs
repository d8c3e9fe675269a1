//! Unit tests of the E2EE domain on a temporary database.

mod backup;
mod changes;
mod cross_signing;
mod keys;

use std::collections::BTreeMap;

use feathur_federation::SigningKey;
use ruma::{
    encryption::{DeviceKeys, OneTimeKey},
    serde::Raw,
    OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, UserId,
};
use serde_json::{json, Value};

use super::{signing::sign_with, E2ee, Upload};
use crate::{
    accounts::Accounts,
    config::Config,
    error::{Error, Result},
    receipts::testing::{fixture, user, Fixture},
    to_device::ToDevice,
};

struct Env {
    f: Fixture,
    accounts: Accounts,
    to_device: ToDevice,
    e2ee: E2ee,
}

fn env() -> Env {
    let f = fixture();
    let config = Config {
        server_name: "example.org".try_into().unwrap(),
        ..Config::default()
    };
    let accounts = Accounts::new(f.storage.clone(), &config);
    let to_device = ToDevice::new(f.storage.clone(), f.rooms.stream().clone());
    let e2ee = E2ee::new(
        f.storage.clone(),
        f.rooms.stream().clone(),
        config.server_name.clone(),
        to_device.clone(),
    );
    accounts.set_device_removal_listener(std::sync::Arc::new(e2ee.clone()));
    Env {
        f,
        accounts,
        to_device,
        e2ee,
    }
}

/// A logged-in device and its ed25519 identity key.
struct Device {
    user: OwnedUserId,
    id: OwnedDeviceId,
    key: SigningKey,
}

impl Env {
    async fn device(&self, name: &str, device: &str) -> Device {
        let user = user(name);
        let id: OwnedDeviceId = device.into();
        self.accounts
            .login(
                &user,
                Some(id.clone()),
                Some(format!("{device} phone")),
                None,
            )
            .await
            .unwrap();
        Device {
            user,
            id,
            key: SigningKey::generate().unwrap(),
        }
    }

    async fn upload(
        &self,
        device: &Device,
        keys: Option<Value>,
        one_time: &[(&str, Value)],
        fallback: &[(&str, Value)],
    ) -> Result<BTreeMap<ruma::OneTimeKeyAlgorithm, ruma::UInt>> {
        let keys = keys.map(|k| raw::<DeviceKeys>(&k));
        let otks = key_map(one_time);
        let fallbacks = key_map(fallback);
        self.e2ee
            .upload(Upload {
                user: &device.user,
                device: &device.id,
                device_keys: keys.as_ref(),
                one_time_keys: &otks,
                fallback_keys: &fallbacks,
            })
            .await
    }
}

impl Device {
    fn ed25519(&self) -> String {
        self.key.public_key_base64()
    }

    /// Device keys as a client publishes them, self-signed.
    fn device_keys(&self) -> Value {
        let unsigned = json!({
            "user_id": self.user,
            "device_id": self.id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", self.id): "Y3VydmUyNTUxOWtleWN1cnZlMjU1MTlrZXkxMjM0NTY",
                format!("ed25519:{}", self.id): self.ed25519(),
            },
        });
        self.sign(unsigned)
    }

    fn sign(&self, value: Value) -> Value {
        sign_with(
            &self.key,
            value,
            &self.user,
            &format!("ed25519:{}", self.id),
        )
    }

    /// A signed one-time key object (a fresh 32-byte key; `n` is for
    /// readability at call sites only).
    fn one_time_key(&self, _n: u32) -> Value {
        let key = SigningKey::generate().unwrap().public_key_base64();
        self.sign(json!({ "key": key }))
    }
}

fn raw<T>(value: &Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(value).unwrap())
}

fn key_map(keys: &[(&str, Value)]) -> BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>> {
    keys.iter()
        .map(|(id, key)| (OwnedOneTimeKeyId::try_from(*id).unwrap(), raw(key)))
        .collect()
}

fn errcode<T: std::fmt::Debug>(result: Result<T>) -> (u16, String) {
    match result.unwrap_err() {
        Error::Matrix { status, kind, .. } => (status.as_u16(), kind.errcode().to_string()),
        other => panic!("expected a Matrix error, got {other}"),
    }
}

fn json_of<T>(raw: &Raw<T>) -> Value {
    serde_json::from_str(raw.json().get()).unwrap()
}

fn ids(users: &[&OwnedUserId]) -> Vec<OwnedUserId> {
    users.iter().map(|u| (*u).clone()).collect()
}
