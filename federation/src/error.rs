//! Error types. Each wraps ruma's error where one exists so callers keep the
//! detail, without exposing the lower-level crypto crates.

use ruma::signatures::{Ed25519KeyPairParseError, JsonError, VerificationError};
use ruma::CanonicalJsonError;

/// Failure to create, load or parse a [`SigningKey`](crate::SigningKey).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key version (the part after `ed25519:`) is empty or contains
    /// characters outside `[a-zA-Z0-9_]` (Server-Server API, "Retrieving
    /// server keys").
    #[error("invalid signing key version {0:?}: must be non-empty and match [a-zA-Z0-9_]")]
    InvalidVersion(String),

    /// The PKCS#8 DER document could not be decoded as an Ed25519 private key.
    #[error("invalid PKCS#8 Ed25519 private key document: {0}")]
    InvalidDocument(String),

    /// ruma refused to build its key pair from the key material.
    #[error("invalid Ed25519 key pair: {0}")]
    KeyPair(#[from] Ed25519KeyPairParseError),

    /// The text key file is not `ed25519 VERSION BASE64_SEED` on exactly one line.
    #[error("malformed signing key file: {0}")]
    MalformedKeyFile(String),

    /// The key file names an algorithm other than `ed25519`.
    #[error("unsupported signing key algorithm {0:?}; only ed25519 is supported")]
    UnsupportedAlgorithm(String),

    /// The seed in the key file is not unpadded base64 of exactly 32 bytes.
    #[error("invalid Ed25519 seed: {0}")]
    InvalidSeed(String),

    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Rng(String),
}

/// Failure to sign a JSON object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The object could not be signed (e.g. its `signatures` field is not an object).
    #[error(transparent)]
    Json(#[from] JsonError),

    /// The value could not be converted to canonical JSON (e.g. it contains a
    /// float or an integer outside the canonical JSON range).
    #[error("value is not representable as canonical JSON: {0}")]
    Canonical(#[from] CanonicalJsonError),

    /// Only JSON objects can be signed; the value serialised to something else.
    #[error("only JSON objects can be signed, value serialised to a {0}")]
    NotAnObject(&'static str),
}

/// Failure to verify the signatures on a JSON object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No public keys were supplied, so nothing could be verified.
    #[error("no public keys supplied to verify against")]
    NoPublicKeys,

    /// The object has no `signatures` field, or it is not a JSON object.
    #[error("object has no `signatures` object")]
    Unsigned,

    /// A server whose keys were supplied has not signed the object.
    #[error("object is not signed by {0:?}")]
    MissingSignature(String),

    /// A signature is invalid, malformed, or no signature by a known key was found
    /// (ruma's verification error).
    #[error(transparent)]
    Verification(#[from] VerificationError),
}
