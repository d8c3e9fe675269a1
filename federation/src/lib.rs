//! Feathur's server-server (federation) protocol.
//!
//! This crate is pure protocol: no storage. It holds
//!
//! * [`SigningKey`], the homeserver's Ed25519 signing key, with its
//!   persisted forms (PKCS#8 DER via [`SigningKey::to_document`] and a
//!   Synapse-compatible text key file via [`SigningKey::to_key_file`]);
//! * canonical-JSON signing and verification ([`SigningKey::sign_json`],
//!   [`verify_json`], [`verify_server_json`]) per the Server-Server API
//!   "Signing JSON" appendix, and PDU hashing, signing, ids and redaction;
//! * [`xmatrix`]: `Authorization: X-Matrix` request signing and checking;
//! * [`discovery`]: "Resolving server names" (well-known, SRV, ports);
//! * [`client`]: the federation HTTP client (reqwest + rustls), with the
//!   [`net`] SSRF guard;
//! * [`keys`]: fetching, caching and using other servers' signing keys.
//!
//! All canonical JSON, Ed25519, signature and `X-Matrix` handling is
//! delegated to ruma; this crate adds key management, stricter verification
//! semantics, networking and error types. See `docs/federation.md`.

pub mod client;
pub mod discovery;
pub mod dns;
mod error;
mod json;
mod key;
mod key_cache;
pub mod keys;
pub mod net;
mod pdu;
pub mod xmatrix;

pub use client::{ClientConfig, ClientError, FederationClient};
pub use error::{KeyError, SignError, VerifyError};
pub use json::{
    to_canonical_json_string, to_canonical_json_string_for_signing, to_canonical_object,
    verify_json, verify_server_json,
};
pub use key::{SigningKey, ED25519_ALGORITHM};
pub use keys::{KeyCache, KeyFetchError, KeyFetcher, KeyUse, MemoryKeyCache, Notary};
pub use pdu::{
    event_id, finalize_pdu, redact_pdu, room_id_for_create_event, verify_pdu, PduCheck, PduError,
    MAX_PDU_BYTES,
};

/// Re-exported so callers can build key maps and objects without naming ruma paths.
pub use ruma::signatures::{PublicKeyMap, PublicKeySet};
pub use ruma::{CanonicalJsonObject, CanonicalJsonValue};
