//! A device whose keys come from vodozemac, published over raw HTTP:
//! signed device keys and one-time keys as a real client makes them.
//! Shared by the E2EE test files (`#[path]`-included; not every file uses
//! every helper).
#![allow(dead_code)]

use matrix_sdk::ruma::CanonicalJsonValue;
use spec_tests::{json, Session, Value};
use vodozemac::olm::Account;

pub struct OlmDevice {
    pub session: Session,
    pub account: Account,
}

/// The canonical JSON of `value` without `signatures` and `unsigned`
/// ("Signing JSON"), the bytes an ed25519 signature covers.
pub fn signing_text(value: &Value) -> String {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("signatures");
        object.remove("unsigned");
    }
    CanonicalJsonValue::try_from(value)
        .expect("test keys are canonical JSON")
        .to_string()
}

impl OlmDevice {
    pub fn new(session: Session) -> OlmDevice {
        OlmDevice {
            session,
            account: Account::new(),
        }
    }

    pub fn user(&self) -> &str {
        &self.session.user_id
    }

    pub fn device(&self) -> &str {
        &self.session.device_id
    }

    pub fn ed25519(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    pub fn curve25519(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// `value` with this device's signature added.
    pub fn sign(&self, mut value: Value) -> Value {
        let signature = self.account.sign(signing_text(&value)).to_base64();
        let key_id = format!("ed25519:{}", self.device());
        value["signatures"][self.user()][key_id] = json!(signature);
        value
    }

    /// The device keys a client publishes, self-signed.
    pub fn device_keys(&self) -> Value {
        self.sign(json!({
            "user_id": self.user(),
            "device_id": self.device(),
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{}", self.device()): self.curve25519(),
                format!("ed25519:{}", self.device()): self.ed25519(),
            },
        }))
    }

    /// `count` new signed one-time keys, `signed_curve25519:<id>` → key.
    pub fn one_time_keys(&mut self, count: usize) -> Value {
        self.account.generate_one_time_keys(count);
        let mut keys = serde_json::Map::new();
        for (id, key) in self.account.one_time_keys() {
            let signed = self.sign(json!({ "key": key.to_base64() }));
            keys.insert(format!("signed_curve25519:{}", id.to_base64()), signed);
        }
        self.account.mark_keys_as_published();
        Value::Object(keys)
    }

    /// A signed fallback key, `signed_curve25519:<id>` → key.
    pub fn fallback_key(&mut self) -> Value {
        self.account.generate_fallback_key();
        let mut keys = serde_json::Map::new();
        for (id, key) in self.account.fallback_key() {
            let signed = self.sign(json!({ "key": key.to_base64(), "fallback": true }));
            keys.insert(format!("signed_curve25519:{}", id.to_base64()), signed);
        }
        self.account.mark_keys_as_published();
        Value::Object(keys)
    }
}
