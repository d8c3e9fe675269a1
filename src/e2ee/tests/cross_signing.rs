//! Cross-signing keys and signatures.

use ruma::{api::client::keys::upload_signatures::v3::SignedKeys, encryption::CrossSigningKey};

use super::super::SigningKeys;
use super::*;

/// A cross-signing key pair of `user` for `usage`.
struct CrossKey {
    key: SigningKey,
    usage: &'static str,
}

impl CrossKey {
    fn new(usage: &'static str) -> CrossKey {
        CrossKey {
            key: SigningKey::generate().unwrap(),
            usage,
        }
    }

    fn public(&self) -> String {
        self.key.public_key_base64()
    }

    fn object(&self, user: &UserId) -> Value {
        json!({
            "user_id": user,
            "usage": [self.usage],
            "keys": { format!("ed25519:{}", self.public()): self.public() },
        })
    }

    /// The key's object signed by `signer` (the master key).
    fn signed_by(&self, user: &UserId, signer: &CrossKey) -> Value {
        let id = format!("ed25519:{}", signer.public());
        sign_with(&signer.key, self.object(user), user, &id)
    }

    fn sign(&self, user: &UserId, value: Value) -> Value {
        sign_with(
            &self.key,
            value,
            user,
            &format!("ed25519:{}", self.public()),
        )
    }
}

fn keys<'a>(
    master: Option<&'a Raw<CrossSigningKey>>,
    self_signing: Option<&'a Raw<CrossSigningKey>>,
    user_signing: Option<&'a Raw<CrossSigningKey>>,
) -> SigningKeys<'a> {
    SigningKeys {
        master,
        self_signing,
        user_signing,
    }
}

#[tokio::test]
async fn cross_signing_upload_query_and_signatures() {
    let env = env();
    let alice = env.device("alice", "A").await;
    let bob = env.device("bob", "B").await;
    env.upload(&alice, Some(alice.device_keys()), &[], &[])
        .await
        .unwrap();
    let (master, ssk, usk) = (
        CrossKey::new("master"),
        CrossKey::new("self_signing"),
        CrossKey::new("user_signing"),
    );
    let a = &alice.user;
    let master_raw = raw(&master.object(a));
    let ssk_raw = raw(&ssk.signed_by(a, &master));
    let usk_raw = raw(&usk.signed_by(a, &master));

    // A self-signing key not signed by the master key; no master at all.
    let forged = raw(&ssk.object(a));
    let upload = keys(Some(&master_raw), Some(&forged), None);
    assert_eq!(
        errcode(env.e2ee.upload_signing_keys(&env.accounts, a, upload).await),
        (400, "M_INVALID_SIGNATURE".to_owned())
    );
    let upload = keys(None, Some(&ssk_raw), None);
    assert_eq!(
        errcode(env.e2ee.upload_signing_keys(&env.accounts, a, upload).await),
        (400, "M_MISSING_PARAM".to_owned())
    );
    // The first upload needs no auth, and succeeds.
    let upload = keys(Some(&master_raw), Some(&ssk_raw), Some(&usk_raw));
    assert!(!env.e2ee.signing_keys_need_auth(a, &upload).unwrap());
    env.e2ee
        .upload_signing_keys(&env.accounts, a, upload)
        .await
        .unwrap();
    // Repeating it needs none either; replacing a key does.
    let upload = keys(Some(&master_raw), Some(&ssk_raw), Some(&usk_raw));
    assert!(!env.e2ee.signing_keys_need_auth(a, &upload).unwrap());
    let other = raw(&CrossKey::new("master").object(a));
    assert!(env
        .e2ee
        .signing_keys_need_auth(a, &keys(Some(&other), None, None))
        .unwrap());

    // Others see master and self-signing keys; only alice her user-signing key.
    let wanted = BTreeMap::from([(a.clone(), Vec::new())]);
    let seen_by_bob = env.e2ee.query(&env.accounts, &bob.user, &wanted).unwrap();
    assert!(seen_by_bob.master_keys.contains_key(a));
    assert!(seen_by_bob.self_signing_keys.contains_key(a));
    assert!(seen_by_bob.user_signing_keys.is_empty());
    let own = env.e2ee.query(&env.accounts, a, &wanted).unwrap();
    assert!(own.user_signing_keys.contains_key(a));

    // Alice signs her device with her self-signing key, and a forgery fails.
    let signed_device = ssk.sign(a, alice.device_keys());
    let mut tampered = ssk.sign(a, alice.device_keys());
    tampered["algorithms"] = json!([]);
    let mut mine = SignedKeys::new();
    mine.add_device_keys(alice.id.clone(), raw(&signed_device));
    let mut bad = SignedKeys::new();
    bad.add_device_keys(alice.id.clone(), raw(&tampered));
    let failures = env
        .e2ee
        .upload_signatures(a, &BTreeMap::from([(a.clone(), bad)]))
        .await
        .unwrap();
    assert!(failures[a].contains_key(alice.id.as_str()), "{failures:?}");
    let failures = env
        .e2ee
        .upload_signatures(a, &BTreeMap::from([(a.clone(), mine)]))
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let seen = env.e2ee.query(&env.accounts, &bob.user, &wanted).unwrap();
    let device = json_of(&seen.device_keys[a][&alice.id]);
    let ssk_id = format!("ed25519:{}", ssk.public());
    assert!(
        device["signatures"][a.as_str()][&ssk_id].is_string(),
        "{device}"
    );

    // Bob signs alice's master key with his user-signing key: only bob sees it.
    let b = &bob.user;
    let (bob_master, bob_usk) = (CrossKey::new("master"), CrossKey::new("user_signing"));
    let (bm, bu) = (
        raw(&bob_master.object(b)),
        raw(&bob_usk.signed_by(b, &bob_master)),
    );
    env.e2ee
        .upload_signing_keys(&env.accounts, b, keys(Some(&bm), None, Some(&bu)))
        .await
        .unwrap();
    let signed_master = bob_usk.sign(b, master.object(a));
    let mut theirs = SignedKeys::new();
    theirs.add_cross_signing_keys(master.public().into(), raw(&signed_master));
    let failures = env
        .e2ee
        .upload_signatures(b, &BTreeMap::from([(a.clone(), theirs)]))
        .await
        .unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    let usk_id = format!("ed25519:{}", bob_usk.public());
    let by_bob = env.e2ee.query(&env.accounts, b, &wanted).unwrap();
    assert!(json_of(&by_bob.master_keys[a])["signatures"][b.as_str()][&usk_id].is_string());
    let by_alice = env.e2ee.query(&env.accounts, a, &wanted).unwrap();
    assert!(json_of(&by_alice.master_keys[a])["signatures"][b.as_str()].is_null());

    // Unknown keys are failures, not errors.
    let mut unknown = SignedKeys::new();
    unknown.add_cross_signing_keys("bm9wZQ".into(), raw(&master.object(a)));
    let failures = env
        .e2ee
        .upload_signatures(a, &BTreeMap::from([(a.clone(), unknown)]))
        .await
        .unwrap();
    assert!(failures[a].contains_key("bm9wZQ"));
}
