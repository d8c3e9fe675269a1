//! The server's ed25519 signing key (Server-Server API: "Retrieving server keys"):
//! generated on first start into the data directory, or read from a configured file.

use std::{io::Write, path::Path, time::Duration};

use anyhow::Context;
use feathur_federation::SigningKey;
use ruma::{
    api::federation::discovery::{ServerSigningKeys, VerifyKey},
    serde::{Base64, Raw},
    MilliSecondsSinceUnixEpoch, OwnedServerSigningKeyId, ServerName,
};

use crate::error::{Error, Result};

/// How long other servers may cache our published keys (`valid_until_ts`,
/// "Retrieving server keys"). They re-fetch after it; events signed after it
/// are not accepted with this response (room versions 5+), so it is a balance
/// between fewer fetches and how long a rotated-out key stays trusted.
pub const KEY_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The body of `GET /_matrix/key/v2/server`: our verify key, no old keys
/// (this server has never rotated its key), valid for [`KEY_VALIDITY`] from
/// `now`, signed by the key it lists.
pub fn published_keys(
    key: &SigningKey,
    server_name: &ServerName,
    now: MilliSecondsSinceUnixEpoch,
) -> Result<Raw<ServerSigningKeys>> {
    let valid_until = u64::from(now.get()).saturating_add(KEY_VALIDITY.as_millis() as u64);
    let valid_until = MilliSecondsSinceUnixEpoch(
        ruma::UInt::try_from(valid_until).map_err(|e| Error::internal(e.to_string()))?,
    );
    let mut keys = ServerSigningKeys::new(server_name.to_owned(), valid_until);
    let key_id = OwnedServerSigningKeyId::try_from(key.key_id())
        .map_err(|e| Error::internal(format!("our key id is not valid: {e}")))?;
    keys.verify_keys.insert(
        key_id,
        VerifyKey::new(Base64::new(key.public_key().to_vec())),
    );
    let signed = key
        .sign_value(server_name.as_str(), &keys)
        .map_err(|e| Error::internal(format!("signing our server keys: {e}")))?;
    let json = serde_json::value::to_raw_value(&signed)
        .map_err(|e| Error::internal(format!("encoding our server keys: {e}")))?;
    Ok(Raw::from_json(json))
}

/// Loads the key file at `path`, creating it (mode 0600) with a new key if absent.
pub fn load_or_generate(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        return SigningKey::from_key_file(&text)
            .with_context(|| format!("the signing key {} is not valid", path.display()));
    }
    let key = SigningKey::generate().context("generating a signing key")?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("creating the signing key {}", tmp.display()))?;
        file.write_all(key.to_key_file().as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    tracing::info!(key_id = key.key_id(), path = %path.display(), "generated a new signing key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use feathur_federation::{to_canonical_object, verify_server_json};
    use ruma::{MilliSecondsSinceUnixEpoch, UInt};

    #[test]
    fn published_keys_are_self_signed_and_valid_for_a_week() {
        let key = feathur_federation::SigningKey::generate().unwrap();
        let name: &ruma::ServerName = "example.org:8448".try_into().unwrap();
        let now = MilliSecondsSinceUnixEpoch(UInt::from(1_000_000u32));
        let raw = super::published_keys(&key, name, now).unwrap();
        let body: serde_json::Value = serde_json::from_str(raw.json().get()).unwrap();
        assert_eq!(body["server_name"], "example.org:8448");
        assert_eq!(
            body["valid_until_ts"].as_u64().unwrap(),
            1_000_000 + super::KEY_VALIDITY.as_millis() as u64
        );
        assert_eq!(body["old_verify_keys"], serde_json::json!({}));
        assert_eq!(
            body["verify_keys"][key.key_id()]["key"],
            key.public_key_base64()
        );
        let object = to_canonical_object(&body).unwrap();
        verify_server_json(name.as_str(), &key.public_key_set(), &object).unwrap();
    }

    #[test]
    fn generated_key_is_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let first = super::load_or_generate(&path).unwrap();
        let second = super::load_or_generate(&path).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
    }
}
