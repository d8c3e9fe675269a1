//! The homeserver's Ed25519 signing key.
//!
//! Matrix servers sign federation requests, events and their own key
//! publications (Server-Server API, "Retrieving server keys") with Ed25519
//! keys identified as `ed25519:VERSION`. Signing itself is done by
//! [`ruma::signatures`]; this module manages the key material and its
//! persisted forms.

use std::fmt;

use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use ed25519_dalek::SigningKey as DalekSigningKey;
use rand::RngCore as _;
use ruma::serde::{base64::Standard, Base64};
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap, PublicKeySet};
use ruma::CanonicalJsonObject;
use serde::Serialize;

use crate::error::{KeyError, SignError};

/// The only signing algorithm Matrix servers use for their keys.
pub const ED25519_ALGORITHM: &str = "ed25519";

/// Length of the random key versions produced by [`SigningKey::generate`].
const GENERATED_VERSION_LEN: usize = 8;

/// PKCS#8 v1 `PrivateKeyInfo` header for an Ed25519 key, followed by the
/// 32-byte seed. Exactly the layout of the example in RFC 8410 §10.3:
///
/// ```text
/// 30 2e                 SEQUENCE, 46 bytes
///    02 01 00           INTEGER 0 (version v1)
///    30 05              SEQUENCE (AlgorithmIdentifier)
///       06 03 2b 65 70  OID 1.3.101.112 (id-Ed25519), no parameters (RFC 8410 §3)
///    04 22              OCTET STRING, 34 bytes (privateKey)
///       04 20           CurvePrivateKey ::= OCTET STRING, 32 bytes (RFC 8410 §7)
/// ```
const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A homeserver signing key: `ed25519:VERSION` plus its key pair.
///
/// The secret seed is zeroised on drop (it is held in an
/// `ed25519_dalek::SigningKey`, used only for encoding; every signature is
/// made by ruma's [`Ed25519KeyPair`]). `Debug` never prints the secret.
pub struct SigningKey {
    key_id: String,
    secret: DalekSigningKey,
    key_pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Generates a fresh key from the OS RNG with a random alphanumeric
    /// version (key IDs are opaque to other servers; a new version on every
    /// rotation keeps old signatures attributable to old keys).
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut rng = rand::rngs::OsRng;
        let mut seed = [0u8; 32];
        rng.try_fill_bytes(&mut seed)
            .map_err(|e| KeyError::Rng(e.to_string()))?;
        let version = random_version(&mut rng)?;
        let key = Self::from_seed(&version, &seed);
        seed.fill(0);
        key
    }

    /// Builds a key from its version (without the `ed25519:` prefix) and a
    /// PKCS#8 v1 or v2 DER document, as returned by [`to_document`](Self::to_document)
    /// or [`Ed25519KeyPair::generate`].
    pub fn from_document(key_id_version: &str, pkcs8_der: &[u8]) -> Result<SigningKey, KeyError> {
        let secret = DalekSigningKey::from_pkcs8_der(pkcs8_der)
            .map_err(|e| KeyError::InvalidDocument(e.to_string()))?;
        Self::from_seed(key_id_version, secret.as_bytes())
    }

    /// Builds a key from its version (without the `ed25519:` prefix) and the
    /// raw 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(key_id_version: &str, seed: &[u8; 32]) -> Result<SigningKey, KeyError> {
        validate_version(key_id_version)?;
        let secret = DalekSigningKey::from_bytes(seed);
        let key_pair = Ed25519KeyPair::new(
            ed25519_dalek::pkcs8::ALGORITHM_OID,
            seed,
            None,
            key_id_version.to_owned(),
        )?;
        Ok(SigningKey {
            key_id: format!("{ED25519_ALGORITHM}:{key_id_version}"),
            secret,
            key_pair,
        })
    }

    /// The private key as a PKCS#8 v1 DER document (RFC 8410), for
    /// persisting. Accepted back by [`from_document`](Self::from_document)
    /// and by ruma's [`Ed25519KeyPair::from_der`]. Treat as secret.
    pub fn to_document(&self) -> Vec<u8> {
        let mut der = Vec::with_capacity(PKCS8_V1_ED25519_PREFIX.len() + 32);
        der.extend_from_slice(&PKCS8_V1_ED25519_PREFIX);
        der.extend_from_slice(self.secret.as_bytes());
        der
    }

    /// Parses a Synapse-style signing key file: one line
    /// `ed25519 VERSION BASE64_SEED` (unpadded standard base64 of the 32-byte
    /// seed; padding and non-zero trailing bits, as in the spec's example
    /// seed, are tolerated). Blank lines are ignored; exactly one key
    /// line is required, so a file holding several keys is rejected rather
    /// than silently truncated.
    pub fn from_key_file(contents: &str) -> Result<SigningKey, KeyError> {
        let mut lines = contents.lines().map(str::trim).filter(|l| !l.is_empty());
        let line = lines
            .next()
            .ok_or_else(|| KeyError::MalformedKeyFile("file contains no key".to_owned()))?;
        if lines.next().is_some() {
            return Err(KeyError::MalformedKeyFile(
                "file contains more than one key line".to_owned(),
            ));
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [algorithm, version, seed_b64] = fields[..] else {
            return Err(KeyError::MalformedKeyFile(format!(
                "expected `{ED25519_ALGORITHM} VERSION BASE64_SEED`, found {} field(s)",
                fields.len()
            )));
        };
        if algorithm != ED25519_ALGORITHM {
            return Err(KeyError::UnsupportedAlgorithm(algorithm.to_owned()));
        }
        let mut seed = Base64::<Standard, [u8; 32]>::parse(seed_b64)
            .map_err(|e| KeyError::InvalidSeed(e.to_string()))?
            .into_inner();
        let key = Self::from_seed(version, &seed);
        seed.fill(0);
        key
    }

    /// Serialises the key as a Synapse-compatible key file line
    /// `ed25519 VERSION BASE64_SEED\n`. Treat as secret.
    pub fn to_key_file(&self) -> String {
        let seed = Base64::<Standard, &[u8]>::new(self.secret.as_bytes());
        format!("{ED25519_ALGORITHM} {} {}\n", self.version(), seed.encode())
    }

    /// The key ID, `ed25519:VERSION`, as used in `signatures` and `verify_keys`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The version part of the key ID (after `ed25519:`).
    pub fn version(&self) -> &str {
        self.key_pair.version()
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key_pair.public_key()
    }

    /// The public key as unpadded standard base64, the form published in
    /// `verify_keys` (Server-Server API, "Retrieving server keys").
    pub fn public_key_base64(&self) -> String {
        Base64::<Standard, [u8; 32]>::new(self.public_key()).encode()
    }

    /// This key alone as a [`PublicKeySet`] (`key_id` → public key).
    pub fn public_key_set(&self) -> PublicKeySet {
        PublicKeySet::from([(self.key_id.clone(), Base64::new(self.public_key().to_vec()))])
    }

    /// This key as a [`PublicKeyMap`] for `server_name`, e.g. to check our
    /// own signatures with [`verify_json`](crate::verify_json).
    pub fn public_key_map(&self, server_name: &str) -> PublicKeyMap {
        PublicKeyMap::from([(server_name.to_owned(), self.public_key_set())])
    }

    /// ruma's key pair, for ruma functions not wrapped here (e.g.
    /// `ruma::signatures::hash_and_sign_event`).
    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    /// Signs `object` as `server_name`, adding `signatures.{server_name}.{key_id}`
    /// and keeping any existing signatures ("Signing JSON": `signatures` and
    /// `unsigned` are excluded from the signed canonical form).
    pub fn sign_json(
        &self,
        server_name: &str,
        object: &mut CanonicalJsonObject,
    ) -> Result<(), SignError> {
        ruma::signatures::sign_json(server_name, &self.key_pair, object)?;
        Ok(())
    }

    /// Converts `value` to a canonical JSON object and signs it as `server_name`.
    pub fn sign_value<T: Serialize + ?Sized>(
        &self,
        server_name: &str,
        value: &T,
    ) -> Result<CanonicalJsonObject, SignError> {
        let mut object = crate::json::to_canonical_object(value)?;
        self.sign_json(server_name, &mut object)?;
        Ok(object)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

/// Key versions must match `[a-zA-Z0-9_]+` (Server-Server API, "Retrieving
/// server keys"), which also keeps them safe as one whitespace-free field of
/// the key file.
fn validate_version(version: &str) -> Result<(), KeyError> {
    if !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(())
    } else {
        Err(KeyError::InvalidVersion(version.to_owned()))
    }
}

/// A random `[a-zA-Z0-9]` version, by rejection sampling so each character
/// is uniform (248 = 4 * 62; bytes above are discarded).
fn random_version(rng: &mut impl rand::RngCore) -> Result<String, KeyError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut version = String::with_capacity(GENERATED_VERSION_LEN);
    let mut buf = [0u8; 16];
    while version.len() < GENERATED_VERSION_LEN {
        rng.try_fill_bytes(&mut buf)
            .map_err(|e| KeyError::Rng(e.to_string()))?;
        for &b in &buf {
            if version.len() < GENERATED_VERSION_LEN && usize::from(b) < 4 * ALPHABET.len() {
                version.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed of the Matrix spec's "Signing JSON" examples (Appendices).
    const SPEC_SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
    const SPEC_PUBLIC_KEY: &str = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI";

    fn spec_key() -> SigningKey {
        SigningKey::from_key_file(&format!("ed25519 1 {SPEC_SEED}\n")).unwrap()
    }

    #[test]
    fn generated_key_id_shape() {
        let key = SigningKey::generate().unwrap();
        let version = key.key_id().strip_prefix("ed25519:").unwrap();
        assert_eq!(version, key.version());
        assert!(version.len() >= 6);
        assert!(version.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(key.public_key_base64().len(), 43);
        let other = SigningKey::generate().unwrap();
        assert_ne!(key.key_id(), other.key_id());
        assert_ne!(key.public_key(), other.public_key());
    }

    #[test]
    fn spec_seed_gives_spec_public_key() {
        let key = spec_key();
        assert_eq!(key.key_id(), "ed25519:1");
        assert_eq!(key.public_key_base64(), SPEC_PUBLIC_KEY);
    }

    #[test]
    fn key_file_round_trip() {
        let key = SigningKey::generate().unwrap();
        let file = key.to_key_file();
        assert!(file.starts_with(&format!("ed25519 {} ", key.version())));
        assert!(file.ends_with('\n') && !file.contains('='));
        let loaded = SigningKey::from_key_file(&file).unwrap();
        assert_eq!(loaded.key_id(), key.key_id());
        assert_eq!(loaded.public_key_base64(), key.public_key_base64());
        assert_eq!(loaded.to_key_file(), file);

        let mut a = CanonicalJsonObject::new();
        a.insert("x".into(), "y".to_owned().into());
        let mut b = a.clone();
        key.sign_json("example.org", &mut a).unwrap();
        loaded.sign_json("example.org", &mut b).unwrap();
        assert_eq!(a, b, "Ed25519 is deterministic: same key, same signature");
    }

    #[test]
    fn spec_key_file_round_trip() {
        // The spec's seed string has non-zero trailing bits ("...XA1"); it is
        // accepted on read and re-encoded canonically ("...XA0").
        let file = spec_key().to_key_file();
        assert_eq!(
            file,
            "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n"
        );
        let reloaded = SigningKey::from_key_file(&file).unwrap();
        assert_eq!(reloaded.public_key_base64(), SPEC_PUBLIC_KEY);
        assert_eq!(reloaded.to_key_file(), file);
        // Synapse-generated versions look like `a_AbCd`; padded base64 and
        // surrounding whitespace are tolerated.
        let key =
            SigningKey::from_key_file(&format!("\n  ed25519  a_AbCd\t{SPEC_SEED}=  \n\n")).unwrap();
        assert_eq!(key.key_id(), "ed25519:a_AbCd");
        assert_eq!(key.public_key_base64(), SPEC_PUBLIC_KEY);
    }

    #[test]
    fn document_round_trip() {
        let key = SigningKey::generate().unwrap();
        let der = key.to_document();
        assert_eq!(der.len(), 48);
        let loaded = SigningKey::from_document(key.version(), &der).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(loaded.to_key_file(), key.to_key_file());
        // ruma accepts our document directly too.
        let ruma_pair = Ed25519KeyPair::from_der(&der, "v".to_owned()).unwrap();
        assert_eq!(ruma_pair.public_key(), key.public_key());
    }

    #[test]
    fn accepts_ruma_generated_pkcs8_v2() {
        let der = Ed25519KeyPair::generate();
        let key = SigningKey::from_document("abc_123", &der).unwrap();
        let ruma_pair = Ed25519KeyPair::from_der(&der, "abc_123".to_owned()).unwrap();
        assert_eq!(key.public_key(), ruma_pair.public_key());
        // Re-encoded as v1 it still loads to the same key.
        let again = SigningKey::from_document("abc_123", &key.to_document()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
    }

    #[test]
    fn spec_seed_document_matches_rfc8410_layout() {
        let der = spec_key().to_document();
        assert_eq!(der[..16], PKCS8_V1_ED25519_PREFIX);
        let seed = Base64::<Standard, [u8; 32]>::parse(SPEC_SEED).unwrap();
        assert_eq!(&der[16..], seed.as_bytes());
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(
            SigningKey::from_document("v1", b"not der"),
            Err(KeyError::InvalidDocument(_))
        ));
        assert!(SigningKey::from_document("v1", &[]).is_err());
        let mut der = spec_key().to_document();
        der.truncate(40);
        assert!(SigningKey::from_document("v1", &der).is_err());
        let mut der = spec_key().to_document();
        der[11] = 0x71; // OID 1.3.101.113 = Ed448
        assert!(SigningKey::from_document("v1", &der).is_err());
    }

    #[test]
    fn rejects_bad_versions() {
        let der = spec_key().to_document();
        for bad in ["", "a b", "a:b", "ünï", "a\n", "a-b"] {
            assert!(
                matches!(
                    SigningKey::from_document(bad, &der),
                    Err(KeyError::InvalidVersion(_))
                ),
                "{bad:?}"
            );
        }
        assert!(SigningKey::from_document("Good_1", &der).is_ok());
    }

    #[test]
    fn rejects_bad_key_files() {
        let cases = [
            ("", "MalformedKeyFile"),
            ("\n \n", "MalformedKeyFile"),
            ("ed25519 1", "MalformedKeyFile"),
            ("ed25519 1 AAAA extra", "MalformedKeyFile"),
            (
                "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\ned25519 2 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1",
                "MalformedKeyFile",
            ),
            ("curve25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1", "UnsupportedAlgorithm"),
            ("ed25519 1 !!!notbase64!!!", "InvalidSeed"),
            ("ed25519 1 AAAA", "InvalidSeed"),
            ("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1AAAA", "InvalidSeed"),
            ("ed25519 a:b YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1", "InvalidVersion"),
        ];
        for (input, expected) in cases {
            let err = SigningKey::from_key_file(input).unwrap_err();
            let debug = format!("{err:?}");
            assert!(debug.starts_with(expected), "{input:?}: {debug}");
        }
    }

    #[test]
    fn debug_hides_secret() {
        let key = spec_key();
        let debug = format!("{key:?}");
        assert!(debug.contains("ed25519:1") && debug.contains(SPEC_PUBLIC_KEY));
        assert!(!debug.contains(SPEC_SEED));
    }

    #[test]
    fn random_version_is_alphanumeric_and_sized() {
        let mut rng = rand::rngs::OsRng;
        for _ in 0..50 {
            let v = random_version(&mut rng).unwrap();
            assert_eq!(v.len(), GENERATED_VERSION_LEN);
            assert!(validate_version(&v).is_ok());
        }
    }
}
