//! Typed keys and values: the only place that turns them into bytes.
//!
//! Key encoding (what sorts where in RocksDB):
//! - `u64`: 8 bytes big-endian, so byte order equals numeric order.
//! - `String` and ruma ids: their UTF-8 bytes, no length prefix.
//! - `[u8; 32]` (hashes): the 32 raw bytes.
//! - Tuples `(A, B)` / `(A, B, C)` / `(A, B, C, D)`: the parts joined by one [`SEP`] (0xFF)
//!   byte; there is a separator after every part but the last, whatever the
//!   part's type, so the scheme is uniform. 0xFF never occurs in UTF-8, so for
//!   string parts the separator is unambiguous and `"ab"` + SEP is never a
//!   prefix of `"abc"` + SEP. Within one first part, keys sort by the next
//!   part; across first parts the order is byte order with SEP counting as
//!   0xFF, so `("ab", _)` sorts after `("abc", _)`. Only prefix iteration and
//!   the order inside a prefix are meant to be relied on.
//!   Fixed-width parts (`u64`, hashes) may contain
//!   0xFF themselves; they are split by their known width instead of by
//!   searching for the separator.
//!
//! Values are serde_json: simple, self-describing and easy to inspect with
//! debugging tools; a value that fails to decode is a `StorageError`.

use serde::{de::DeserializeOwned, Serialize};

use super::error::CodecError;

/// The byte that joins the parts of a tuple key.
pub const SEP: u8 = 0xFF;

/// A type usable as (part of) a table key.
pub trait KeyCodec: Sized {
    /// `Some(n)` when every encoding is exactly `n` bytes (tuple decoding
    /// then splits by width rather than searching for [`SEP`]).
    const FIXED_LEN: Option<usize> = None;

    /// Appends the encoding of `self` to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);

    /// Decodes exactly `bytes`; never panics, whatever the input.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;

    /// The encoding of `self` in a fresh buffer.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// A single-part key that may be a component of a tuple key. Tuples are not
/// `KeyPart`s, so nested tuples (which would break splitting) do not compile.
pub trait KeyPart: KeyCodec {}

/// `Self` is a leading part (or parts) of the tuple key `K`: used by
/// `Table::iter_prefix` so that only meaningful prefixes type-check.
pub trait KeyPrefix<K>: KeyCodec {
    /// The prefix bytes: the encoded parts followed by a separator.
    fn encode_prefix(&self) -> Vec<u8> {
        let mut out = self.encode();
        out.push(SEP);
        out
    }
}

impl<A: KeyPart, B: KeyPart> KeyPrefix<(A, B)> for A {}
impl<A: KeyPart, B: KeyPart, C: KeyPart> KeyPrefix<(A, B, C)> for A {}
impl<A: KeyPart, B: KeyPart, C: KeyPart> KeyPrefix<(A, B, C)> for (A, B) {}
impl<A: KeyPart, B: KeyPart, C: KeyPart, D: KeyPart> KeyPrefix<(A, B, C, D)> for A {}
impl<A: KeyPart, B: KeyPart, C: KeyPart, D: KeyPart> KeyPrefix<(A, B, C, D)> for (A, B) {}
impl<A: KeyPart, B: KeyPart, C: KeyPart, D: KeyPart> KeyPrefix<(A, B, C, D)> for (A, B, C) {}

impl KeyCodec for u64 {
    const FIXED_LEN: Option<usize> = Some(8);

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let arr: [u8; 8] = bytes.try_into().map_err(|_| CodecError::WrongLength {
            expected: 8,
            found: bytes.len(),
        })?;
        Ok(u64::from_be_bytes(arr))
    }
}
impl KeyPart for u64 {}

impl KeyCodec for [u8; 32] {
    const FIXED_LEN: Option<usize> = Some(32);

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        bytes.try_into().map_err(|_| CodecError::WrongLength {
            expected: 32,
            found: bytes.len(),
        })
    }
}
impl KeyPart for [u8; 32] {}

fn utf8(bytes: &[u8]) -> Result<&str, CodecError> {
    std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8)
}

impl KeyCodec for String {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        utf8(bytes).map(str::to_owned)
    }
}
impl KeyPart for String {}

/// Ruma ids are stored as their UTF-8 text and re-validated on decode.
macro_rules! ruma_id_key {
    ($($id:ident),* $(,)?) => {$(
        impl KeyCodec for ruma::$id {
            fn encode_into(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.as_str().as_bytes());
            }

            fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
                ruma::$id::try_from(utf8(bytes)?).map_err(|e| CodecError::InvalidId {
                    kind: stringify!($id),
                    reason: e.to_string(),
                })
            }
        }
        impl KeyPart for ruma::$id {}
    )*};
}

ruma_id_key!(
    OwnedUserId,
    OwnedDeviceId,
    OwnedRoomId,
    OwnedEventId,
    OwnedRoomAliasId,
    OwnedServerName
);

/// Splits the first part (of type `P`) and its separator off `bytes`.
fn split_part<P: KeyCodec>(bytes: &[u8]) -> Result<(&[u8], &[u8]), CodecError> {
    let end = match P::FIXED_LEN {
        Some(len) => len,
        None => bytes
            .iter()
            .position(|&b| b == SEP)
            .ok_or(CodecError::MissingSeparator)?,
    };
    match (bytes.get(..end), bytes.get(end), bytes.get(end + 1..)) {
        (Some(part), Some(&SEP), Some(rest)) => Ok((part, rest)),
        _ => Err(CodecError::MissingSeparator),
    }
}

impl<A: KeyPart, B: KeyPart> KeyCodec for (A, B) {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.0.encode_into(out);
        out.push(SEP);
        self.1.encode_into(out);
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (a, rest) = split_part::<A>(bytes)?;
        Ok((A::decode(a)?, B::decode(rest)?))
    }
}

impl<A: KeyPart, B: KeyPart, C: KeyPart> KeyCodec for (A, B, C) {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.0.encode_into(out);
        out.push(SEP);
        self.1.encode_into(out);
        out.push(SEP);
        self.2.encode_into(out);
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (a, rest) = split_part::<A>(bytes)?;
        let (b, rest) = split_part::<B>(rest)?;
        Ok((A::decode(a)?, B::decode(b)?, C::decode(rest)?))
    }
}

impl<A: KeyPart, B: KeyPart, C: KeyPart, D: KeyPart> KeyCodec for (A, B, C, D) {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.0.encode_into(out);
        out.push(SEP);
        self.1.encode_into(out);
        out.push(SEP);
        self.2.encode_into(out);
        out.push(SEP);
        self.3.encode_into(out);
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let (a, rest) = split_part::<A>(bytes)?;
        let (b, rest) = split_part::<B>(rest)?;
        let (c, rest) = split_part::<C>(rest)?;
        Ok((
            A::decode(a)?,
            B::decode(b)?,
            C::decode(c)?,
            D::decode(rest)?,
        ))
    }
}

/// Serialises a value (serde_json).
pub(crate) fn encode_value<V: Serialize>(value: &V) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value)
}

/// Deserialises a value (serde_json).
pub(crate) fn decode_value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{OwnedDeviceId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId};

    fn round_trip<K: KeyCodec + PartialEq + std::fmt::Debug>(key: K) {
        let bytes = key.encode();
        assert_eq!(K::decode(&bytes).as_ref(), Ok(&key));
    }

    fn user(s: &str) -> OwnedUserId {
        OwnedUserId::try_from(s).unwrap()
    }

    #[test]
    fn atoms_round_trip() {
        for n in [0, 1, 255, 256, u64::MAX - 1, u64::MAX] {
            round_trip(n);
        }
        round_trip(String::new());
        round_trip("héllo wörld".to_owned());
        round_trip([0xFFu8; 32]);
        round_trip([7u8; 32]);
        round_trip(user("@alice:example.org"));
        round_trip(OwnedDeviceId::from("ABCDEFGH"));
        round_trip(OwnedRoomId::try_from("!room:example.org").unwrap());
        round_trip(OwnedEventId::try_from("$abcdefghijklmnopqrstuvwxyz012345678901234").unwrap());
        round_trip(OwnedRoomAliasId::try_from("#lobby:example.org").unwrap());
        round_trip(ruma::OwnedServerName::try_from("[::1]:8448").unwrap());
    }

    #[test]
    fn tuples_round_trip() {
        round_trip((user("@a:x.org"), OwnedDeviceId::from("DEV")));
        round_trip((user("@a:x.org"), "m.push_rules".to_owned()));
        round_trip((u64::MAX, 0xFFFF_u64));
        round_trip(([0xFFu8; 32], "after".to_owned()));
        round_trip((String::new(), String::new()));
        round_trip((
            user("@a:x.org"),
            OwnedRoomId::try_from("!r:x.org").unwrap(),
            "m.tag".to_owned(),
        ));
        round_trip((
            user("@a:x.org"),
            OwnedDeviceId::from("D"),
            "txn1".to_owned(),
        ));
        round_trip((u64::MAX, [0xFFu8; 32], 3u64));
        round_trip((
            user("@a:x.org"),
            7u64,
            OwnedRoomId::try_from("!r:x.org").unwrap(),
            "session".to_owned(),
        ));
        round_trip((
            user("@a:x.org"),
            OwnedDeviceId::from("D"),
            String::new(),
            u64::MAX,
        ));
    }

    #[test]
    fn u64_byte_order_is_numeric_order() {
        let nums = [
            0,
            1,
            2,
            255,
            256,
            65_535,
            65_536,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ];
        for pair in nums.windows(2) {
            assert!(pair[0].encode() < pair[1].encode(), "{pair:?}");
        }
    }

    #[test]
    fn tuple_byte_order() {
        let a1 = ("a".to_owned(), 1u64).encode();
        let a2 = ("a".to_owned(), 2u64).encode();
        let b0 = ("b".to_owned(), 0u64).encode();
        assert!(a1 < a2 && a2 < b0);
        // The flip side of a 0xFF separator: a first part sorts AFTER longer
        // ones it is a prefix of (documented at the top of this file).
        assert!(("ab".to_owned(), 0u64).encode() > ("abc".to_owned(), u64::MAX).encode());
    }

    #[test]
    fn prefix_does_not_match_longer_part() {
        let prefix = <String as KeyPrefix<(String, String)>>::encode_prefix(&"ab".to_owned());
        let other = ("abc".to_owned(), "x".to_owned()).encode();
        let own = ("ab".to_owned(), "x".to_owned()).encode();
        assert!(!other.starts_with(&prefix));
        assert!(own.starts_with(&prefix));
        let two = <(String, String) as KeyPrefix<(String, String, String)>>::encode_prefix(&(
            "a".to_owned(),
            "b".to_owned(),
        ));
        assert!(("a".to_owned(), "b".to_owned(), "c".to_owned())
            .encode()
            .starts_with(&two));
        assert!(!("a".to_owned(), "bc".to_owned(), "c".to_owned())
            .encode()
            .starts_with(&two));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(u64::decode(&[1, 2, 3]).is_err());
        assert!(u64::decode(&[0; 9]).is_err());
        assert!(<[u8; 32]>::decode(&[0; 31]).is_err());
        assert!(String::decode(&[0xFF, 0xFE]).is_err());
        assert!(OwnedUserId::decode(b"not a user id").is_err());
        assert!(OwnedUserId::decode(&[0xC3]).is_err());
        assert!(OwnedRoomId::decode(b"").is_err());
        assert!(OwnedEventId::decode(b"nope").is_err());
        assert!(OwnedRoomAliasId::decode(b"lobby").is_err());
        // Tuples: no separator, bad part, stray separator in a string part.
        assert!(<(String, String)>::decode(b"abc").is_err());
        assert!(<(u64, String)>::decode(&[0; 8]).is_err());
        assert!(<(u64, String)>::decode(&[0; 9]).is_err());
        assert!(<(String, String)>::decode(b"a\xFFb\xFFc").is_err());
        assert!(<(String, String, String)>::decode(b"a\xFFb").is_err());
        assert!(<(String, String, String, String)>::decode(b"a\xFFb\xFFc").is_err());
        assert!(<(OwnedUserId, OwnedDeviceId)>::decode(b"alice\xFFDEV").is_err());
        assert!(<([u8; 32], u64)>::decode(&[]).is_err());
        for len in 0..40 {
            let junk = vec![0xFFu8; len];
            let _ = <(u64, String, [u8; 32])>::decode(&junk);
            let _ = <(String, u64)>::decode(&junk);
        }
    }

    #[test]
    fn values_round_trip_and_reject_garbage() {
        let v = vec![("x".to_owned(), 1u32)];
        let bytes = encode_value(&v).unwrap();
        assert_eq!(decode_value::<Vec<(String, u32)>>(&bytes).unwrap(), v);
        assert!(decode_value::<Vec<(String, u32)>>(b"{oops").is_err());
    }
}
