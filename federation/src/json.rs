//! Canonical JSON and signature verification (Server-Server API, "Signing
//! JSON" appendix), as thin wrappers over ruma.

use std::borrow::Cow;

use ruma::signatures::{JsonError, PublicKeyMap, PublicKeySet};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde::Serialize;

use crate::error::{SignError, VerifyError};

/// The full canonical JSON encoding of `object` (sorted keys, no
/// insignificant whitespace, UTF-8), including `signatures` and `unsigned`.
/// `CanonicalJsonObject`'s own serialisation is canonical; this just names it.
pub fn to_canonical_json_string(object: &CanonicalJsonObject) -> Result<String, SignError> {
    serde_json::to_string(object).map_err(|e| SignError::Json(JsonError::from(e)))
}

/// The bytes that get signed: canonical JSON of `object` without its
/// `signatures` and `unsigned` fields ("Signing JSON").
pub fn to_canonical_json_string_for_signing(
    object: &CanonicalJsonObject,
) -> Result<String, SignError> {
    Ok(ruma::signatures::to_canonical_json_string_for_signing(
        object,
    )?)
}

/// Converts any serialisable value to a canonical JSON object, rejecting what
/// canonical JSON cannot represent (floats, out-of-range integers, non-objects).
pub fn to_canonical_object<T: Serialize + ?Sized>(
    value: &T,
) -> Result<CanonicalJsonObject, SignError> {
    match ruma::canonical_json::to_canonical_value(value)? {
        CanonicalJsonValue::Object(object) => Ok(object),
        CanonicalJsonValue::Null => Err(SignError::NotAnObject("null")),
        CanonicalJsonValue::Bool(_) => Err(SignError::NotAnObject("boolean")),
        CanonicalJsonValue::Integer(_) => Err(SignError::NotAnObject("integer")),
        CanonicalJsonValue::String(_) => Err(SignError::NotAnObject("string")),
        CanonicalJsonValue::Array(_) => Err(SignError::NotAnObject("array")),
    }
}

/// Verifies that **every** server in `public_keys` has validly signed `object`.
///
/// For each server in the map: it must have a `signatures.{server}` entry,
/// at least one of its signatures must be under a key ID present in its
/// [`PublicKeySet`], and every such signature must verify ("Checking for a
/// signature"). Signatures under key IDs not in the set, and signatures from
/// servers not in the map (e.g. a notary's co-signature), are ignored.
///
/// This is stricter than bare [`ruma::signatures::verify_json`], which
/// succeeds vacuously on an object with an empty `signatures` map, and which
/// fails when some signer is absent from the map; the cryptographic check
/// itself is ruma's.
pub fn verify_json(
    public_keys: &PublicKeyMap,
    object: &CanonicalJsonObject,
) -> Result<(), VerifyError> {
    if public_keys.is_empty() {
        return Err(VerifyError::NoPublicKeys);
    }
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Err(VerifyError::Unsigned);
    };
    if let Some(server) = public_keys.keys().find(|s| !signatures.contains_key(*s)) {
        return Err(VerifyError::MissingSignature(server.clone()));
    }

    // ruma verifies every signer present, so drop signers we were not asked
    // about. Signatures are excluded from the signed bytes, so this does not
    // change what is verified. Clone only when there is something to drop.
    let object = if signatures.keys().all(|s| public_keys.contains_key(s)) {
        Cow::Borrowed(object)
    } else {
        let wanted: CanonicalJsonObject = signatures
            .iter()
            .filter(|(server, _)| public_keys.contains_key(*server))
            .map(|(server, sigs)| (server.clone(), sigs.clone()))
            .collect();
        let mut filtered = object.clone();
        filtered.insert("signatures".to_owned(), CanonicalJsonValue::Object(wanted));
        Cow::Owned(filtered)
    };
    ruma::signatures::verify_json(public_keys, &object)?;
    Ok(())
}

/// Verifies that `server_name` has validly signed `object` with one of
/// `keys` — e.g. the self-signature on a `/_matrix/key/v2/server` response
/// ("Retrieving server keys"). See [`verify_json`] for the exact rules.
pub fn verify_server_json(
    server_name: &str,
    keys: &PublicKeySet,
    object: &CanonicalJsonObject,
) -> Result<(), VerifyError> {
    verify_json(
        &PublicKeyMap::from([(server_name.to_owned(), keys.clone())]),
        object,
    )
}

#[cfg(test)]
mod tests {
    use ruma::serde::Base64;
    use serde_json::json;

    use super::*;
    use crate::SigningKey;

    /// The Matrix spec's "Signing JSON" example key (Appendices).
    fn spec_key() -> SigningKey {
        SigningKey::from_key_file("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap()
    }

    fn object(value: serde_json::Value) -> CanonicalJsonObject {
        to_canonical_object(&value).unwrap()
    }

    fn signature(object: &CanonicalJsonObject, server: &str, key_id: &str) -> String {
        object["signatures"].as_object().unwrap()[server]
            .as_object()
            .unwrap()[key_id]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn spec_vector_empty_object() {
        let key = spec_key();
        let mut obj = CanonicalJsonObject::new();
        key.sign_json("domain", &mut obj).unwrap();
        assert_eq!(
            to_canonical_json_string(&obj).unwrap(),
            r#"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}"#
        );
        verify_json(&key.public_key_map("domain"), &obj).unwrap();
    }

    #[test]
    fn spec_vector_one_two() {
        let key = spec_key();
        let obj = key
            .sign_value("domain", &json!({"one": 1, "two": "Two"}))
            .unwrap();
        assert_eq!(
            signature(&obj, "domain", "ed25519:1"),
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        );
    }

    #[test]
    fn spec_vector_verifies_with_published_public_key_only() {
        // Independent of our key handling: spec public key + spec signature.
        let obj = object(json!({"signatures": {"domain": {"ed25519:1":
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}));
        let keys = PublicKeySet::from([(
            "ed25519:1".to_owned(),
            Base64::parse("XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI").unwrap(),
        )]);
        verify_server_json("domain", &keys, &obj).unwrap();
    }

    #[test]
    fn canonical_strings() {
        let obj = object(json!({"b": 2, "a": {"d": [1, "x"], "c": null}, "本": "日",
            "signatures": {}, "unsigned": {"age": 1}}));
        assert_eq!(
            to_canonical_json_string(&obj).unwrap(),
            r#"{"a":{"c":null,"d":[1,"x"]},"b":2,"signatures":{},"unsigned":{"age":1},"本":"日"}"#
        );
        assert_eq!(
            to_canonical_json_string_for_signing(&obj).unwrap(),
            r#"{"a":{"c":null,"d":[1,"x"]},"b":2,"本":"日"}"#
        );
    }

    #[test]
    fn generate_sign_verify() {
        let key = SigningKey::generate().unwrap();
        let obj = key
            .sign_value(
                "example.org",
                &json!({"server_name": "example.org", "valid_until_ts": 1_700_000_000_000_u64,
                        "nested": {"list": [1, 2, 3]}, "unsigned": {"x": 1}}),
            )
            .unwrap();
        verify_json(&key.public_key_map("example.org"), &obj).unwrap();
        verify_server_json("example.org", &key.public_key_set(), &obj).unwrap();
    }

    #[test]
    fn tampering_with_any_field_fails() {
        let key = SigningKey::generate().unwrap();
        let keys = key.public_key_map("example.org");
        let signed = key
            .sign_value(
                "example.org",
                &json!({"a": 1, "b": "two", "c": {"d": [true, null]}}),
            )
            .unwrap();
        verify_json(&keys, &signed).unwrap();

        type Tamper = fn(&mut CanonicalJsonObject);
        let tampers: Vec<(&str, Tamper)> = vec![
            ("change int", |o| {
                o.insert("a".into(), CanonicalJsonValue::Integer(2u8.into()));
            }),
            ("change string", |o| {
                o.insert("b".into(), "Two".to_owned().into());
            }),
            ("remove field", |o| {
                o.remove("b");
            }),
            ("add field", |o| {
                o.insert("e".into(), CanonicalJsonValue::Null);
            }),
            ("nested change", |o| {
                let c = o.get_mut("c").unwrap().as_object_mut().unwrap();
                c.insert(
                    "d".into(),
                    CanonicalJsonValue::Array(vec![
                        CanonicalJsonValue::Bool(false),
                        CanonicalJsonValue::Null,
                    ]),
                );
            }),
            ("nested add", |o| {
                o.get_mut("c")
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .insert("z".into(), CanonicalJsonValue::Null);
            }),
        ];
        for (what, tamper) in tampers {
            let mut obj = signed.clone();
            tamper(&mut obj);
            assert!(verify_json(&keys, &obj).is_err(), "{what} should fail");
        }

        // Adding `unsigned` is allowed: it is excluded from the signature.
        let mut obj = signed.clone();
        obj.insert("unsigned".into(), object(json!({"age": 5})).into());
        verify_json(&keys, &obj).unwrap();
    }

    #[test]
    fn tampered_signature_fails() {
        let key = SigningKey::generate().unwrap();
        let keys = key.public_key_map("example.org");
        let mut obj = key.sign_value("example.org", &json!({"a": 1})).unwrap();
        let sig = signature(&obj, "example.org", key.key_id());
        let mut bytes = Base64::<ruma::serde::base64::Standard>::parse(&sig)
            .unwrap()
            .into_inner();
        bytes[0] ^= 1;
        let bad = Base64::<ruma::serde::base64::Standard>::new(bytes).encode();
        obj.insert(
            "signatures".into(),
            object(json!({"example.org": {key.key_id(): bad}})).into(),
        );
        assert!(matches!(
            verify_json(&keys, &obj),
            Err(VerifyError::Verification(_))
        ));
        obj.insert(
            "signatures".into(),
            object(json!({"example.org": {key.key_id(): "not base64!"}})).into(),
        );
        assert!(verify_json(&keys, &obj).is_err());
    }

    #[test]
    fn wrong_key_fails() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let obj = key.sign_value("example.org", &json!({"a": 1})).unwrap();
        // Other key published under the same key ID.
        let forged = PublicKeySet::from([(
            key.key_id().to_owned(),
            Base64::new(other.public_key().to_vec()),
        )]);
        assert!(matches!(
            verify_server_json("example.org", &forged, &obj),
            Err(VerifyError::Verification(_))
        ));
        // Other key under its own ID: no signature by a known key.
        assert!(verify_server_json("example.org", &other.public_key_set(), &obj).is_err());
        // Right key, wrong server.
        assert!(matches!(
            verify_json(&key.public_key_map("evil.example"), &obj),
            Err(VerifyError::MissingSignature(s)) if s == "evil.example"
        ));
    }

    #[test]
    fn unsigned_or_empty_inputs_fail() {
        let key = SigningKey::generate().unwrap();
        let keys = key.public_key_map("example.org");
        assert!(matches!(
            verify_json(&keys, &object(json!({"a": 1}))),
            Err(VerifyError::Unsigned)
        ));
        assert!(matches!(
            verify_json(&keys, &object(json!({"a": 1, "signatures": "x"}))),
            Err(VerifyError::Unsigned)
        ));
        // ruma alone would accept an empty signatures map; we do not.
        assert!(matches!(
            verify_json(&keys, &object(json!({"a": 1, "signatures": {}}))),
            Err(VerifyError::MissingSignature(_))
        ));
        let signed = key.sign_value("example.org", &json!({"a": 1})).unwrap();
        assert!(matches!(
            verify_json(&PublicKeyMap::new(), &signed),
            Err(VerifyError::NoPublicKeys)
        ));
    }

    #[test]
    fn multiple_signers() {
        let origin = SigningKey::generate().unwrap();
        let notary = SigningKey::generate().unwrap();
        let mut obj = origin
            .sign_value("origin.example", &json!({"k": "v"}))
            .unwrap();
        notary.sign_json("notary.example", &mut obj).unwrap();

        // Each signer alone, ignoring the other's signature.
        verify_json(&origin.public_key_map("origin.example"), &obj).unwrap();
        verify_json(&notary.public_key_map("notary.example"), &obj).unwrap();
        // Both required.
        let mut both = origin.public_key_map("origin.example");
        both.extend(notary.public_key_map("notary.example"));
        verify_json(&both, &obj).unwrap();
        // Notary signature is over the same bytes (signatures excluded).
        assert_eq!(
            to_canonical_json_string_for_signing(&obj).unwrap(),
            r#"{"k":"v"}"#
        );

        // A second key of the same server adds to, not replaces, signatures.
        let origin2 = SigningKey::generate().unwrap();
        origin2.sign_json("origin.example", &mut obj).unwrap();
        let sigs = obj["signatures"].as_object().unwrap()["origin.example"]
            .as_object()
            .unwrap();
        assert_eq!(sigs.len(), 2);
        verify_json(&origin2.public_key_map("origin.example"), &obj).unwrap();
    }

    #[test]
    fn sign_value_rejects_non_canonical_values() {
        let key = spec_key();
        assert!(matches!(
            key.sign_value("d", &json!([1, 2])),
            Err(SignError::NotAnObject("array"))
        ));
        assert!(matches!(
            key.sign_value("d", &json!({"f": 1.5})),
            Err(SignError::Canonical(_))
        ));
        assert!(matches!(
            key.sign_value("d", &json!({"big": 1u64 << 60})),
            Err(SignError::Canonical(_))
        ));
        let mut bad = object(json!({"signatures": []}));
        assert!(matches!(
            key.sign_json("d", &mut bad),
            Err(SignError::Json(_))
        ));
    }

    #[test]
    fn sign_value_with_struct() {
        #[derive(Serialize)]
        struct KeyResponse<'a> {
            server_name: &'a str,
            valid_until_ts: u64,
        }
        let key = spec_key();
        let obj = key
            .sign_value(
                "domain",
                &KeyResponse {
                    server_name: "domain",
                    valid_until_ts: 1,
                },
            )
            .unwrap();
        assert_eq!(obj["server_name"].as_str(), Some("domain"));
        verify_json(&key.public_key_map("domain"), &obj).unwrap();
    }
}
