//! `Authorization: X-Matrix` request signing and verification
//! (Server-Server API, "Request Authentication").
//!
//! ruma's [`XMatrix`] does the work: it builds the signed object
//! `{method, uri, origin, destination, content}` from an `http::Request`,
//! parses the header per RFC 9110 (any parameter order, quoted or bare
//! values, case-insensitive scheme and names, `destination` optional for
//! older senders) and formats it. This module adds our key type, a single
//! error type and the rule that the signing key must be one the caller
//! trusts for the origin.

use http::HeaderMap;
use ruma::api::federation::authentication::{
    XMatrixFromRequestError, XMatrixSigningInput, XMatrixVerificationError,
};
use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::ServerName;

use crate::SigningKey;

pub use ruma::api::federation::authentication::{XMatrix, XMatrixParseError};

/// Failure to sign, parse or verify an `X-Matrix` authorization.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XMatrixError {
    /// The request has no `Authorization` header.
    #[error("missing Authorization header")]
    Missing,

    /// The header is not a well-formed `X-Matrix` authorization.
    #[error("malformed X-Matrix authorization: {0}")]
    Parse(#[from] XMatrixParseError),

    /// The outgoing request could not be signed (its body is not JSON).
    #[error("could not sign request: {0}")]
    Sign(#[from] XMatrixFromRequestError),

    /// The request was signed with a key we have no (valid) copy of.
    #[error("request signed with unknown key {0}")]
    UnknownKey(String),

    /// `destination` names another server, or the signature does not verify.
    #[error("X-Matrix verification failed: {0}")]
    Verification(#[from] XMatrixVerificationError),
}

/// Signs `request` as `origin` for `destination` with `key`, setting its
/// `Authorization` header. The `uri` signed is the request's path and query
/// exactly as they will be sent; `content` is the JSON body if there is one.
///
/// Server names are the names before any delegation ("the server names from
/// before delegation would take place are used").
pub fn sign_request<T: AsRef<[u8]>>(
    key: &SigningKey,
    origin: &ServerName,
    destination: &ServerName,
    request: &mut http::Request<T>,
) -> Result<XMatrix, XMatrixError> {
    let input = XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), key.key_pair());
    let xmatrix = XMatrix::sign_http_request(request, input)?;
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, (&xmatrix).into());
    Ok(xmatrix)
}

/// Parses the `X-Matrix` credentials of an incoming request's headers.
pub fn parse_authorization(headers: &HeaderMap) -> Result<XMatrix, XMatrixError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(XMatrixError::Missing)?;
    match XMatrix::try_from(value) {
        Ok(xmatrix) => Ok(xmatrix),
        Err(error) => {
            // "The recipient should allow colons to be included in values
            // without requiring the value to be enclosed in quotes": RFC 9110
            // tokens cannot hold `:`, so quote bare values and try again.
            let text = value.to_str().map_err(XMatrixParseError::from)?;
            match quote_bare_values(text) {
                Some(quoted) => XMatrix::parse(quoted).map_err(|_| error.into()),
                None => Err(error.into()),
            }
        }
    }
}

/// Rewrites `name=bare` parameters as `name="bare"`, leaving quoted values
/// alone; `None` when there was nothing to quote.
fn quote_bare_values(header: &str) -> Option<String> {
    let (scheme, params) = header.split_once(' ')?;
    let mut out = format!("{scheme} ");
    let mut changed = false;
    let mut chars = params.chars().peekable();
    while chars.peek().is_some() {
        // Copy the name, up to `=`, or a stray separator.
        for c in chars.by_ref() {
            out.push(c);
            if c == '=' {
                break;
            }
        }
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            out.push(chars.next()?);
        }
        if chars.peek() == Some(&'"') {
            // A quoted string, with backslash escapes, copied as is.
            out.push(chars.next()?);
            while let Some(c) = chars.next() {
                out.push(c);
                if c == '\\' {
                    out.push(chars.next()?);
                } else if c == '"' {
                    break;
                }
            }
        } else {
            let mut bare = String::new();
            while let Some(c) = chars.next_if(|c| *c != ',') {
                bare.push(c);
            }
            let trimmed = bare.trim_end();
            if trimmed.contains('"') || trimmed.contains('\\') {
                return None;
            }
            changed |= !trimmed.is_empty();
            out.push('"');
            out.push_str(trimmed);
            out.push('"');
        }
        // Copy up to and including the next comma.
        while let Some(c) = chars.next_if(|c| *c != ',') {
            out.push(c);
        }
        if let Some(c) = chars.next() {
            out.push(c);
        }
    }
    changed.then_some(out)
}

/// Verifies an incoming request's `X-Matrix` signature.
///
/// `our_name` is this server's name: a `destination` naming anything else is
/// refused (the caller answers 401). `origin_keys` are the origin's current
/// `verify_keys` the caller has fetched and found valid now; keys from
/// `old_verify_keys` may sign events only, never requests. `request` must
/// carry the path and query as received and the full body.
pub fn verify_request<T: AsRef<[u8]>>(
    xmatrix: &XMatrix,
    request: &http::Request<T>,
    our_name: &ServerName,
    origin_keys: &PublicKeySet,
) -> Result<(), XMatrixError> {
    let key_id = xmatrix.key.as_str();
    let public_key = origin_keys
        .get(key_id)
        .ok_or_else(|| XMatrixError::UnknownKey(key_id.to_owned()))?;
    let keys = PublicKeyMap::from([(
        xmatrix.origin.to_string(),
        PublicKeySet::from([(key_id.to_owned(), public_key.clone())]),
    )]);
    xmatrix.verify_http_request(request, our_name, &keys)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::server_name;

    use super::*;

    fn request(method: &str, uri: &str, body: &str) -> http::Request<Vec<u8>> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(body.as_bytes().to_vec())
            .unwrap()
    }

    #[test]
    fn signed_request_verifies_on_receipt() {
        let key = SigningKey::generate().unwrap();
        let (origin, dest) = (server_name!("origin.example"), server_name!("dest.example"));
        let mut sent = request(
            "PUT",
            "https://dest.example:8448/_matrix/federation/v1/send/1?x=%20y",
            r#"{"pdus":[],"edus":[]}"#,
        );
        sign_request(&key, origin, dest, &mut sent).unwrap();
        let header = sent.headers()[http::header::AUTHORIZATION]
            .to_str()
            .unwrap();
        assert!(header.starts_with("X-Matrix "), "{header}");

        // The receiver sees origin-form; path and query are what was signed.
        let mut received = request(
            "PUT",
            "/_matrix/federation/v1/send/1?x=%20y",
            r#"{"edus": [], "pdus": []}"#,
        );
        *received.headers_mut() = sent.headers().clone();
        let xmatrix = parse_authorization(received.headers()).unwrap();
        assert_eq!(xmatrix.origin, origin);
        assert_eq!(xmatrix.destination.as_deref(), Some(dest));
        assert_eq!(xmatrix.key.as_str(), key.key_id());
        verify_request(&xmatrix, &received, dest, &key.public_key_set()).unwrap();

        // Wrong destination, other body, other query, unknown key: refused.
        assert!(matches!(
            verify_request(
                &xmatrix,
                &received,
                server_name!("other.example"),
                &key.public_key_set()
            ),
            Err(XMatrixError::Verification(
                XMatrixVerificationError::DestinationMismatch
            ))
        ));
        let mut tampered = request(
            "PUT",
            "/_matrix/federation/v1/send/1?x=%20y",
            r#"{"pdus":[1]}"#,
        );
        *tampered.headers_mut() = sent.headers().clone();
        assert!(verify_request(&xmatrix, &tampered, dest, &key.public_key_set()).is_err());
        let mut tampered = request(
            "PUT",
            "/_matrix/federation/v1/send/1?x=z",
            r#"{"pdus":[],"edus":[]}"#,
        );
        *tampered.headers_mut() = sent.headers().clone();
        assert!(verify_request(&xmatrix, &tampered, dest, &key.public_key_set()).is_err());
        let other = SigningKey::generate().unwrap();
        assert!(matches!(
            verify_request(&xmatrix, &received, dest, &other.public_key_set()),
            Err(XMatrixError::UnknownKey(_))
        ));
    }

    #[test]
    fn get_without_body_signs_no_content() {
        let key = SigningKey::generate().unwrap();
        let (origin, dest) = (server_name!("a.example"), server_name!("b.example:8448"));
        let mut sent = request("GET", "/_matrix/federation/v1/version", "");
        let xmatrix = sign_request(&key, origin, dest, &mut sent).unwrap();
        verify_request(&xmatrix, &sent, dest, &key.public_key_set()).unwrap();
    }

    /// The spec's python example signs exactly this object; check our
    /// signature is the one `sign_json` gives over it.
    #[test]
    fn signature_is_over_the_spec_request_object() {
        let key = SigningKey::generate().unwrap();
        let mut sent = request("POST", "/target?a=b", r#"{"k":"v"}"#);
        let xmatrix = sign_request(
            &key,
            server_name!("origin.hs.example.com"),
            server_name!("destination.hs.example.com"),
            &mut sent,
        )
        .unwrap();
        let signed = key
            .sign_value(
                "origin.hs.example.com",
                &serde_json::json!({
                    "method": "POST", "uri": "/target?a=b",
                    "origin": "origin.hs.example.com",
                    "destination": "destination.hs.example.com",
                    "content": {"k": "v"},
                }),
            )
            .unwrap();
        let expected = signed["signatures"].as_object().unwrap()["origin.hs.example.com"]
            .as_object()
            .unwrap()[key.key_id()]
        .as_str()
        .unwrap()
        .to_owned();
        assert_eq!(xmatrix.sig.encode(), expected);
    }

    #[test]
    fn parses_spec_variants() {
        let key = SigningKey::generate().unwrap();
        let mut sent = request("GET", "/_matrix/key/v2/server", "");
        let xmatrix = sign_request(
            &key,
            server_name!("origin.example"),
            server_name!("dest.example"),
            &mut sent,
        )
        .unwrap();
        let sig = xmatrix.sig.encode();
        let kid = key.key_id();
        for header in [
            // The spec's own form, quoted, in its order.
            format!(
                r#"X-Matrix origin="origin.example",destination="dest.example",key="{kid}",sig="{sig}""#
            ),
            // Bare tokens, other order, lower-case scheme, spaces around commas.
            format!(
                r#"x-matrix sig="{sig}" , key={kid},  ORIGIN=origin.example,destination=dest.example"#
            ),
            // Bare values with colons (older senders).
            format!(
                r#"X-Matrix origin=origin.example,destination=dest.example,key={kid},sig={sig}"#
            ),
            // No destination (pre-1.3 senders), an unknown parameter.
            format!(r#"X-Matrix origin=origin.example,key="{kid}",sig="{sig}",extra=1"#),
        ] {
            let mut received = request("GET", "/_matrix/key/v2/server", "");
            received
                .headers_mut()
                .insert(http::header::AUTHORIZATION, header.parse().unwrap());
            let parsed = parse_authorization(received.headers()).unwrap();
            verify_request(
                &parsed,
                &received,
                server_name!("dest.example"),
                &key.public_key_set(),
            )
            .unwrap_or_else(|e| panic!("{header}: {e}"));
        }
        let missing_sig = http::HeaderMap::from_iter([(
            http::header::AUTHORIZATION,
            "X-Matrix origin=a.example,key=\"ed25519:1\""
                .parse()
                .unwrap(),
        )]);
        assert!(matches!(
            parse_authorization(&missing_sig),
            Err(XMatrixError::Parse(_))
        ));
        assert!(matches!(
            parse_authorization(&HeaderMap::new()),
            Err(XMatrixError::Missing)
        ));
    }

    #[test]
    fn bare_values_get_quoted() {
        assert_eq!(
            quote_bare_values(r#"X-Matrix origin=a.example:8448 , key="ed25519:x",sig=abc"#)
                .as_deref(),
            Some(r#"X-Matrix origin="a.example:8448", key="ed25519:x",sig="abc""#)
        );
        assert_eq!(
            quote_bare_values(r#"X-Matrix key="a\",b",origin=x"#).as_deref(),
            Some(r#"X-Matrix key="a\",b",origin="x""#)
        );
        assert_eq!(quote_bare_values(r#"X-Matrix key="x""#), None);
        assert_eq!(quote_bare_values("X-Matrix"), None);
    }
}
