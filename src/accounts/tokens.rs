//! Access tokens: 256 random bits, handed to the client once; only their SHA-256
//! is stored, so a copy of the database does not yield usable tokens.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The SHA-256 of an access token: the key under which its session is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

/// A new access token: a recognisable prefix (so leaked tokens are easy to
/// scan for) followed by 32 random bytes in URL-safe base64.
pub fn new_access_token() -> String {
    format!("fth_{}", random_string(32))
}

/// `bytes` random bytes as unpadded URL-safe base64.
pub fn random_string(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A device id clients can read back and type: 10 upper-case letters.
pub fn new_device_id() -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..10)
        .map(|_| char::from(b'A' + rng.gen_range(0..26)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_long() {
        let a = new_access_token();
        let b = new_access_token();
        assert_ne!(a, b);
        assert!(a.len() >= 4 + 43);
        assert_eq!(TokenHash::of(&a), TokenHash::of(&a));
        assert_ne!(TokenHash::of(&a), TokenHash::of(&b));
    }

    #[test]
    fn device_ids_are_letters() {
        let d = new_device_id();
        assert_eq!(d.len(), 10);
        assert!(d.chars().all(|c| c.is_ascii_uppercase()));
    }
}
