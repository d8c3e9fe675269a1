//! Cross-signing (Client-Server API "End-to-End Encryption": "Cross-signing",
//! `POST /keys/device_signing/upload`, `POST /keys/signatures/upload`).
//!
//! A user has up to three cross-signing keys: the master key, and the
//! self-signing and user-signing keys, each of which must be signed by the
//! master key (the one in the same upload, or the stored one). Uploading
//! keys that replace stored ones needs user-interactive auth; a first
//! upload, or one that repeats exactly the stored keys, does not (Matrix
//! 1.11: "This allows clients to freely upload one set of keys, but not
//! modify/overwrite keys if they already exist").
//!
//! Signatures uploaded later are stored apart from the keys (so a re-upload
//! of a key keeps them) and merged into `/keys/query` answers:
//! - on one's own devices: by one's self-signing key;
//! - on one's own master key: by one of one's devices;
//! - on another user's master key: by one's user-signing key, and only the
//!   signer sees it ("signatures ... that the requesting user is allowed to see").
//!
//! Every accepted change counts as a device-list change of the user whose
//! view changed (the key owner; for another user's master key, the signer).

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use ruma::{
    api::{
        client::keys::upload_signatures::v3::{Failure, SignedKeys},
        error::ErrorKind,
    },
    encryption::CrossSigningKey,
    serde::Raw,
    OwnedDeviceId, OwnedUserId, UserId,
};
use serde_json::{value::RawValue, Value};

use super::{
    device_keys::{device_target, to_raw},
    invalid_signature, signing, E2ee, KeyChange,
};
use crate::{
    accounts::Accounts,
    error::{Error, Result},
    storage::Batch,
};

const MASTER: &str = "master";
const SELF_SIGNING: &str = "self_signing";
const USER_SIGNING: &str = "user_signing";

/// The keys of one `/keys/device_signing/upload` request.
pub struct SigningKeys<'a> {
    pub master: Option<&'a Raw<CrossSigningKey>>,
    pub self_signing: Option<&'a Raw<CrossSigningKey>>,
    pub user_signing: Option<&'a Raw<CrossSigningKey>>,
}

impl SigningKeys<'_> {
    fn each(&self) -> impl Iterator<Item = (&'static str, &Raw<CrossSigningKey>)> {
        [
            (MASTER, self.master),
            (SELF_SIGNING, self.self_signing),
            (USER_SIGNING, self.user_signing),
        ]
        .into_iter()
        .filter_map(|(usage, key)| key.map(|key| (usage, key)))
    }
}

/// A user's cross-signing keys as `/keys/query` shows them to a requester.
pub(super) struct ForQuery {
    pub master: Option<Raw<CrossSigningKey>>,
    pub self_signing: Option<Raw<CrossSigningKey>>,
    pub user_signing: Option<Raw<CrossSigningKey>>,
}

/// A checked uploaded key: its stored form and its public key.
struct Checked {
    value: Value,
    public: String,
}

/// The name a cross-signing key carries in the signatures table.
fn key_target(public: &str) -> String {
    format!("key:{public}")
}

/// The public key of a stored cross-signing key.
fn public_of(value: &Value) -> Option<String> {
    let key: CrossSigningKey = serde_json::from_value(value.clone()).ok()?;
    key.keys.into_values().next()
}

fn check_key(user: &UserId, raw: &Raw<CrossSigningKey>, usage: &str) -> Result<Checked> {
    let key: CrossSigningKey = raw
        .deserialize()
        .map_err(|e| Error::bad_json(format!("Invalid {usage} key: {e}")))?;
    if key.user_id.as_str() != user.as_str() {
        return Err(Error::invalid_param(format!(
            "The {usage} key must be for {user}"
        )));
    }
    if !key.usage.iter().any(|u| u.as_str() == usage) {
        return Err(Error::invalid_param(format!(
            "The {usage} key's usage must include {usage}"
        )));
    }
    let mut keys = key.keys.into_iter();
    let (Some((id, public)), None) = (keys.next(), keys.next()) else {
        return Err(Error::invalid_param(format!(
            "The {usage} key must hold exactly one key"
        )));
    };
    if id.as_str() != format!("ed25519:{public}") {
        return Err(Error::invalid_param(format!(
            "The {usage} key's id must be ed25519:<its public key>"
        )));
    }
    Ok(Checked {
        value: signing::stored_form(raw.json().get())?,
        public,
    })
}

/// One rejected signature of `/keys/signatures/upload`.
fn failure(errcode: &str, error: String) -> Failure {
    serde_json::from_value(serde_json::json!({ "errcode": errcode, "error": error }))
        .expect("a failure is two strings")
}

impl E2ee {
    /// Whether this upload replaces keys, and so needs user-interactive auth.
    pub fn signing_keys_need_auth(&self, user: &UserId, keys: &SigningKeys<'_>) -> Result<bool> {
        let user = user.to_owned();
        if !self
            .inner
            .cross_signing
            .contains(&(user.clone(), MASTER.to_owned()))?
        {
            return Ok(false);
        }
        for (usage, raw) in keys.each() {
            let stored = self
                .inner
                .cross_signing
                .get(&(user.clone(), usage.to_owned()))?;
            let provided = signing::stored_form(raw.json().get()).ok();
            if stored.is_none() || stored != provided {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `POST /keys/device_signing/upload`, after any auth it needs.
    pub async fn upload_signing_keys(
        &self,
        accounts: &Accounts,
        user: &OwnedUserId,
        keys: SigningKeys<'_>,
    ) -> Result<()> {
        let _lock = self.lock_user(user).await;
        let inner = &self.inner;
        let stored = |usage: &str| inner.cross_signing.get(&(user.clone(), usage.to_owned()));
        let master = keys
            .master
            .map(|raw| check_key(user, raw, MASTER))
            .transpose()?;
        let master_public = match &master {
            Some(master) => Some(master.public.clone()),
            None => stored(MASTER)?.as_ref().and_then(public_of),
        };
        let mut checked = Vec::new();
        for (usage, raw) in [
            (SELF_SIGNING, keys.self_signing),
            (USER_SIGNING, keys.user_signing),
        ] {
            let Some(raw) = raw else { continue };
            let key = check_key(user, raw, usage)?;
            let Some(master_public) = &master_public else {
                return Err(Error::new(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::MissingParam,
                    "No master signing key: upload one first or with this key",
                ));
            };
            let object = signing::canonical(&key.value)
                .map_err(|e| Error::bad_json(format!("Invalid {usage} key: {e}")))?;
            signing::verify(
                &object,
                user,
                &format!("ed25519:{master_public}"),
                master_public,
            )
            .map_err(|e| invalid_signature(format!("The {usage} key: {e}")))?;
            checked.push((usage, key));
        }
        if let Some(master) = master {
            checked.push((MASTER, master));
        }
        for (_, key) in &checked {
            let as_device: OwnedDeviceId = key.public.as_str().into();
            if accounts.device(user, &as_device)?.is_some() {
                return Err(Error::forbidden(
                    "A cross-signing public key equals one of the user's device ids",
                ));
            }
        }

        let mut batch = inner.storage.batch();
        let mut changed = false;
        for (usage, key) in checked {
            let row = (user.clone(), usage.to_owned());
            let old = inner.cross_signing.get(&row)?;
            if old.as_ref() == Some(&key.value) {
                continue;
            }
            // Signatures on a replaced key do not carry over to its successor.
            if let Some(old_public) = old.as_ref().and_then(public_of) {
                if old_public != key.public {
                    for row in inner
                        .signatures
                        .iter_prefix(&(user.clone(), key_target(&old_public)))
                    {
                        batch.delete(&inner.signatures, &row?.0);
                    }
                }
            }
            batch.put(&inner.cross_signing, &row, &key.value)?;
            changed = true;
        }
        let change = match changed {
            true => Some(self.begin_change(&mut batch, user)?),
            false => None,
        };
        inner.storage.commit(batch).await?;
        if let Some(change) = change {
            change.committed();
        }
        Ok(())
    }

    /// `user`'s cross-signing keys as `requester` may see them: the
    /// user-signing key only for oneself.
    pub(super) fn cross_signing_for(
        &self,
        user: &OwnedUserId,
        requester: &UserId,
    ) -> Result<ForQuery> {
        let get = |usage: &str| -> Result<Option<Raw<CrossSigningKey>>> {
            let Some(mut value) = self
                .inner
                .cross_signing
                .get(&(user.clone(), usage.to_owned()))?
            else {
                return Ok(None);
            };
            if let Some(public) = public_of(&value) {
                self.merge_signatures(&mut value, user, &key_target(&public), requester)?;
            }
            to_raw(&value).map(Some)
        };
        Ok(ForQuery {
            master: get(MASTER)?,
            self_signing: get(SELF_SIGNING)?,
            user_signing: match user.as_str() == requester.as_str() {
                true => get(USER_SIGNING)?,
                false => None,
            },
        })
    }

    /// `POST /keys/signatures/upload`: stores every valid signature;
    /// returns the failures per user and key id.
    pub async fn upload_signatures(
        &self,
        requester: &OwnedUserId,
        signed: &BTreeMap<OwnedUserId, SignedKeys>,
    ) -> Result<BTreeMap<OwnedUserId, BTreeMap<String, Failure>>> {
        let _guards = self
            .lock_users(signed.keys().chain(std::iter::once(requester)))
            .await;
        let mut batch = self.inner.storage.batch();
        let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, Failure>> = BTreeMap::new();
        let mut changed = BTreeSet::new();
        for (target, keys) in signed {
            for (key_id, json) in keys.iter() {
                match self.stage_signature(&mut batch, requester, target, key_id, json) {
                    Ok(user) => {
                        changed.insert(user);
                    }
                    Err((errcode, error)) => {
                        failures
                            .entry(target.clone())
                            .or_default()
                            .insert(key_id.to_owned(), failure(errcode, error));
                    }
                }
            }
        }
        let changes: Vec<KeyChange> = changed
            .iter()
            .map(|user| self.begin_change(&mut batch, user))
            .collect::<Result<_>>()?;
        self.inner.storage.commit(batch).await?;
        for change in changes {
            change.committed();
        }
        Ok(failures)
    }

    /// Checks one signed object and adds the requester's signature on it to
    /// `batch`. Returns whose device list this changes, or the failure.
    fn stage_signature(
        &self,
        batch: &mut Batch,
        requester: &OwnedUserId,
        target: &OwnedUserId,
        key_id: &str,
        json: &RawValue,
    ) -> std::result::Result<OwnedUserId, (&'static str, String)> {
        let inner = &self.inner;
        let internal = |e: Error| ("M_UNKNOWN", format!("{e}"));
        if !self.is_local(target) {
            return Err((
                "M_UNRECOGNIZED",
                "Keys of remote users cannot be signed until this server federates".to_owned(),
            ));
        }
        let value: Value = serde_json::from_str(json.get())
            .map_err(|e| ("M_BAD_JSON", format!("Invalid signed object: {e}")))?;
        let object = signing::canonical(&value).map_err(|e| ("M_BAD_JSON", e))?;
        let stored_master = inner
            .cross_signing
            .get(&(target.clone(), MASTER.to_owned()))
            .map_err(|e| internal(e.into()))?;
        let master_public = stored_master.as_ref().and_then(public_of);

        // What is signed, with which of the requester's keys.
        let (stored, row_target, candidates): (Value, String, Vec<(String, String)>) =
            if target == requester {
                let device: OwnedDeviceId = key_id.into();
                let device_keys = inner
                    .device_keys
                    .get(&(target.clone(), device.clone()))
                    .map_err(|e| internal(e.into()))?;
                if let Some(device_keys) = device_keys {
                    let ssk = self
                        .stored_public(requester, SELF_SIGNING)
                        .map_err(internal)?;
                    let Some(ssk) = ssk else {
                        return Err(("M_INVALID_SIGNATURE", "No self-signing key".to_owned()));
                    };
                    (
                        device_keys,
                        device_target(&device),
                        vec![(format!("ed25519:{ssk}"), ssk)],
                    )
                } else if master_public.as_deref() == Some(key_id) {
                    let devices = self
                        .own_device_signers(requester, &object)
                        .map_err(internal)?;
                    (
                        stored_master.unwrap_or_default(),
                        key_target(key_id),
                        devices,
                    )
                } else {
                    return Err(("M_NOT_FOUND", format!("No key {key_id} of {target}")));
                }
            } else {
                if master_public.as_deref() != Some(key_id) {
                    return Err((
                        "M_NOT_FOUND",
                        format!("{key_id} is not the master key of {target}"),
                    ));
                }
                let usk = self
                    .stored_public(requester, USER_SIGNING)
                    .map_err(internal)?;
                let Some(usk) = usk else {
                    return Err(("M_INVALID_SIGNATURE", "No user-signing key".to_owned()));
                };
                (
                    stored_master.unwrap_or_default(),
                    key_target(key_id),
                    vec![(format!("ed25519:{usk}"), usk)],
                )
            };
        if signing::signed_part(&stored) != signing::signed_part(&value) {
            return Err((
                "M_INVALID_PARAM",
                "The signed object does not match the stored key".to_owned(),
            ));
        }
        let mut verified = BTreeMap::new();
        let mut reason = format!("No signature by {requester} with a key allowed to sign this");
        for (signer_key_id, public) in candidates {
            match signing::verify(&object, requester, &signer_key_id, &public) {
                Ok(()) => {
                    if let Some(signature) =
                        signing::signature_of(&object, requester, &signer_key_id)
                    {
                        verified.insert(signer_key_id, signature.to_owned());
                    }
                }
                Err(e) if signing::signature_of(&object, requester, &signer_key_id).is_some() => {
                    reason = e
                }
                Err(_) => {}
            }
        }
        if verified.is_empty() {
            return Err(("M_INVALID_SIGNATURE", reason));
        }
        let row = (target.clone(), row_target, requester.clone());
        let mut all = inner.signatures.get(&row).map_err(|e| internal(e.into()))?;
        all.get_or_insert_with(BTreeMap::new).extend(verified);
        batch
            .put(&inner.signatures, &row, &all.unwrap_or_default())
            .map_err(|e| internal(e.into()))?;
        // A signature on another user's master key is visible to the signer only.
        Ok(if target == requester {
            target.clone()
        } else {
            requester.clone()
        })
    }

    fn stored_public(&self, user: &OwnedUserId, usage: &str) -> Result<Option<String>> {
        Ok(self
            .inner
            .cross_signing
            .get(&(user.clone(), usage.to_owned()))?
            .as_ref()
            .and_then(public_of))
    }

    /// The requester's devices that signed `object`, with their ed25519 keys.
    fn own_device_signers(
        &self,
        user: &OwnedUserId,
        object: &ruma::CanonicalJsonObject,
    ) -> Result<Vec<(String, String)>> {
        let mut signers = Vec::new();
        for key_id in signing::signature_key_ids(object, user) {
            let Some(device) = key_id.strip_prefix("ed25519:") else {
                continue;
            };
            let row = (user.clone(), OwnedDeviceId::from(device));
            let Some(keys) = self.inner.device_keys.get(&row)? else {
                continue;
            };
            if let Some(public) = keys["keys"][&key_id].as_str() {
                signers.push((key_id.clone(), public.to_owned()));
            }
        }
        Ok(signers)
    }
}
