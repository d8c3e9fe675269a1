//! Signature checks on uploaded keys ("Signing JSON" appendix: canonical
//! JSON without `signatures` and `unsigned`, ed25519), done by ruma.

use ruma::{serde::Base64, CanonicalJsonObject, CanonicalJsonValue, SigningKeyAlgorithm, UserId};
use serde_json::Value;

/// `value` as a canonical JSON object, or why it cannot be one (floats,
/// out-of-range integers, not an object).
pub fn canonical(value: &Value) -> Result<CanonicalJsonObject, String> {
    match CanonicalJsonValue::try_from(value.clone()) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err("not a JSON object".to_owned()),
        Err(e) => Err(format!("not canonical JSON: {e}")),
    }
}

/// Checks `signatures[signer][key_id]` of `object`: an ed25519 signature by
/// `public_key` (unpadded base64) over the object's canonical JSON.
pub fn verify(
    object: &CanonicalJsonObject,
    signer: &UserId,
    key_id: &str,
    public_key: &str,
) -> Result<(), String> {
    let signature = signature_of(object, signer, key_id)
        .ok_or_else(|| format!("no signature by {signer} with {key_id}"))?;
    let signature: Base64 =
        Base64::parse(signature).map_err(|_| "the signature is not base64".to_owned())?;
    let public_key: Base64 =
        Base64::parse(public_key).map_err(|_| "the public key is not base64".to_owned())?;
    let signed = ruma::signatures::to_canonical_json_string_for_signing(object)
        .map_err(|e| format!("cannot canonicalise the object: {e}"))?;
    ruma::signatures::verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        signature.as_bytes(),
        signed.as_bytes(),
    )
    .map_err(|e| format!("invalid signature by {signer} with {key_id}: {e}"))
}

/// The signature string at `signatures[signer][key_id]`, if any.
pub fn signature_of<'a>(
    object: &'a CanonicalJsonObject,
    signer: &UserId,
    key_id: &str,
) -> Option<&'a str> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return None;
    };
    let Some(CanonicalJsonValue::Object(by_signer)) = signatures.get(signer.as_str()) else {
        return None;
    };
    match by_signer.get(key_id) {
        Some(CanonicalJsonValue::String(signature)) => Some(signature),
        _ => None,
    }
}

/// The key ids under `signatures[signer]` (strings only).
pub fn signature_key_ids(object: &CanonicalJsonObject, signer: &UserId) -> Vec<String> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Vec::new();
    };
    let Some(CanonicalJsonValue::Object(by_signer)) = signatures.get(signer.as_str()) else {
        return Vec::new();
    };
    by_signer
        .iter()
        .filter(|(_, v)| matches!(v, CanonicalJsonValue::String(_)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// An uploaded key's JSON without its `unsigned` part: that is not signed,
/// and the server adds its own there when it answers.
pub fn stored_form(json: &str) -> crate::error::Result<Value> {
    let mut value: Value = serde_json::from_str(json)
        .map_err(|e| crate::error::Error::bad_json(format!("Invalid key object: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        object.remove("unsigned");
    }
    Ok(value)
}

/// `object` without `signatures` and `unsigned`: what must match when a
/// client re-sends a key to add signatures to it.
pub fn signed_part(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("signatures");
        object.remove("unsigned");
    }
    value
}

/// Merges `signatures` of `signer` into `value["signatures"][signer]`.
pub fn merge_signatures(
    value: &mut Value,
    signer: &UserId,
    signatures: &std::collections::BTreeMap<String, String>,
) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    let all = object
        .entry("signatures")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(all) = all.as_object_mut() else {
        return;
    };
    let mine = all
        .entry(signer.as_str())
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(mine) = mine.as_object_mut() {
        for (key_id, signature) in signatures {
            mine.insert(key_id.clone(), Value::String(signature.clone()));
        }
    }
}

/// Signs `value` as `signer` under `key_id` with `key` (tests build keys
/// the way clients do).
#[cfg(test)]
pub fn sign_with(
    key: &feathur_federation::SigningKey,
    mut value: Value,
    signer: &UserId,
    key_id: &str,
) -> Value {
    use ruma::signatures::KeyPair;
    let object = canonical(&value).expect("test values are canonical");
    let text = ruma::signatures::to_canonical_json_string_for_signing(&object)
        .expect("test values canonicalise");
    let signature = key.key_pair().sign(text.as_bytes()).base64();
    let sigs = std::collections::BTreeMap::from([(key_id.to_owned(), signature)]);
    merge_signatures(&mut value, signer, &sigs);
    value
}

#[cfg(test)]
mod tests {
    use ruma::user_id;
    use serde_json::json;

    use super::*;

    fn signed(value: Value, signer: &UserId, key_id: &str) -> (Value, String) {
        let key = feathur_federation::SigningKey::generate().unwrap();
        (
            sign_with(&key, value, signer, key_id),
            key.public_key_base64(),
        )
    }

    #[test]
    fn good_and_bad_signatures() {
        let alice = user_id!("@alice:example.org");
        let (value, public) = signed(json!({"a": 1, "unsigned": {"x": 1}}), alice, "ed25519:DEV");
        let object = canonical(&value).unwrap();
        assert_eq!(verify(&object, alice, "ed25519:DEV", &public), Ok(()));
        // Another key, another signer, a changed object: all refused.
        let (_, other) = signed(json!({}), alice, "ed25519:DEV");
        assert!(verify(&object, alice, "ed25519:DEV", &other).is_err());
        assert!(verify(
            &object,
            user_id!("@bob:example.org"),
            "ed25519:DEV",
            &public
        )
        .is_err());
        let mut changed = value.clone();
        changed["a"] = json!(2);
        assert!(verify(&canonical(&changed).unwrap(), alice, "ed25519:DEV", &public).is_err());
        // `unsigned` is not covered.
        let mut unsigned = value;
        unsigned["unsigned"] = json!({"y": 2});
        assert!(verify(
            &canonical(&unsigned).unwrap(),
            alice,
            "ed25519:DEV",
            &public
        )
        .is_ok());
        // Garbage never panics.
        assert!(verify(&object, alice, "ed25519:DEV", "***").is_err());
        assert!(canonical(&json!(1.5)).is_err());
        assert!(canonical(&json!([1])).is_err());
    }
}
