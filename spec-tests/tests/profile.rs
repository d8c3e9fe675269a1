//! Profiles and global account data (Client-Server API §Profiles,
//! §Client Config).

use spec_tests::{assert_error, assert_error_status, assert_ok, enc, json, TestServer};

const PW: &str = "profile-test-pw";

#[tokio::test]
async fn set_and_read_profile_fields() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let me = enc(&alice.user_id);
    let name_path = format!("/_matrix/client/v3/profile/{me}/displayname");
    let avatar_path = format!("/_matrix/client/v3/profile/{me}/avatar_url");

    let set = server
        .put(
            &name_path,
            alice.token(),
            json!({"displayname": "Alice A."}),
        )
        .await;
    assert_eq!(assert_ok(set), json!({}));
    let got = assert_ok(server.get(&name_path, alice.token()).await);
    assert_eq!(got, json!({"displayname": "Alice A."}));

    let mxc = "mxc://example.org/SEsfnsuifSDFSSEF";
    let set = server
        .put(&avatar_path, alice.token(), json!({"avatar_url": mxc}))
        .await;
    assert_eq!(assert_ok(set), json!({}));
    let got = assert_ok(server.get(&avatar_path, alice.token()).await);
    assert_eq!(got, json!({"avatar_url": mxc}));

    // The whole profile, as seen by another user.
    let profile = assert_ok(
        server
            .get(&format!("/_matrix/client/v3/profile/{me}"), bob.token())
            .await,
    );
    assert_eq!(profile["displayname"], "Alice A.");
    assert_eq!(profile["avatar_url"], mxc);

    // Changing it again replaces the value.
    let set = server
        .put(
            &name_path,
            alice.token(),
            json!({"displayname": "Alice B."}),
        )
        .await;
    assert_ok(set);
    let got = assert_ok(server.get(&name_path, bob.token()).await);
    assert_eq!(got["displayname"], "Alice B.");

    // Bob cannot change Alice's profile.
    let forbidden = server
        .put(&name_path, bob.token(), json!({"displayname": "Mallory"}))
        .await;
    assert_error(&forbidden, 403, "M_FORBIDDEN");
    let forbidden = server
        .put(
            &avatar_path,
            bob.token(),
            json!({"avatar_url": "mxc://evil/x"}),
        )
        .await;
    assert_error(&forbidden, 403, "M_FORBIDDEN");
    let got = assert_ok(server.get(&name_path, alice.token()).await);
    assert_eq!(got["displayname"], "Alice B.");
    let got = assert_ok(server.get(&avatar_path, alice.token()).await);
    assert_eq!(got["avatar_url"], mxc);

    // Setting needs a token.
    let anon = server
        .put(&name_path, None, json!({"displayname": "anon"}))
        .await;
    assert_error(&anon, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn unknown_users_have_no_profile() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let ghost = enc(&server.user_id("nobody"));
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v3/profile/{ghost}"),
                alice.token(),
            )
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error_status(
        &server
            .get(
                &format!("/_matrix/client/v3/profile/{ghost}/displayname"),
                alice.token(),
            )
            .await,
        404,
    );
}

#[tokio::test]
async fn global_account_data() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let path = |user: &str, ty: &str| {
        format!(
            "/_matrix/client/v3/user/{}/account_data/{}",
            enc(user),
            enc(ty)
        )
    };
    let custom = path(&alice.user_id, "org.example.custom.config");

    // Unset type: 404 M_NOT_FOUND.
    assert_error(
        &server.get(&custom, alice.token()).await,
        404,
        "M_NOT_FOUND",
    );

    let content = json!({"theme": "dark", "nested": {"n": 1, "list": [1, 2, 3]}});
    let set = server.put(&custom, alice.token(), content.clone()).await;
    assert_eq!(assert_ok(set), json!({}));
    assert_eq!(assert_ok(server.get(&custom, alice.token()).await), content);

    // Overwrite replaces the whole content.
    let set = server
        .put(&custom, alice.token(), json!({"theme": "light"}))
        .await;
    assert_ok(set);
    assert_eq!(
        assert_ok(server.get(&custom, alice.token()).await),
        json!({"theme": "light"})
    );

    // Types are independent.
    let other = path(&alice.user_id, "org.example.other");
    assert_error(&server.get(&other, alice.token()).await, 404, "M_NOT_FOUND");
    let set = server.put(&other, alice.token(), json!({"x": true})).await;
    assert_ok(set);
    assert_eq!(
        assert_ok(server.get(&custom, alice.token()).await),
        json!({"theme": "light"})
    );

    // Users are independent, and cannot read or write each other's data.
    let bob_custom = path(&bob.user_id, "org.example.custom.config");
    assert_error(
        &server.get(&bob_custom, bob.token()).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&server.get(&custom, bob.token()).await, 403, "M_FORBIDDEN");
    assert_error(
        &server
            .put(&custom, bob.token(), json!({"theme": "evil"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        assert_ok(server.get(&custom, alice.token()).await),
        json!({"theme": "light"})
    );
}
