//! Deleting devices through user-interactive auth (Client-Server API
//! §Device management, §User-Interactive Authentication).

use spec_tests::{
    assert_error, assert_error_status, assert_ok, enc, expect_uia_challenge, json, password_auth,
    Method, StatusCode, TestServer,
};

const PW: &str = "device-test-password";

#[tokio::test]
async fn delete_device_requires_password_uia() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let phone = server.login("alice", PW).await;
    let path = format!("/_matrix/client/v3/devices/{}", enc(&phone.device_id));

    // No auth: a 401 challenge offering m.login.password; nothing deleted.
    let first = server
        .request(Method::DELETE, &path, alice.token(), Some(json!({})))
        .await;
    let session = expect_uia_challenge(&first, "m.login.password");
    assert_ok(server.whoami(&phone.access_token).await);

    // Wrong password: 401 with the flows again plus errcode M_FORBIDDEN.
    let wrong = json!({"auth": password_auth(&alice.user_id, "not-the-password", &session)});
    let (status, body) = server
        .request(Method::DELETE, &path, alice.token(), Some(wrong))
        .await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "wrong password: {status} {body}"
    );
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    if status == StatusCode::UNAUTHORIZED {
        assert!(
            body["flows"].is_array(),
            "a UIA 401 repeats the flows: {body}"
        );
    }
    assert_ok(server.whoami(&phone.access_token).await);
    assert!(server.device_ids(&alice).await.contains(&phone.device_id));

    // Right password: the device and its token are gone.
    let resp = server
        .uia_password(Method::DELETE, &path, &alice, json!({}), PW)
        .await;
    assert_eq!(assert_ok(resp), json!({}));
    assert_error(
        &server.whoami(&phone.access_token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error_status(&server.get(&path, alice.token()).await, 404);
    assert_eq!(
        server.device_ids(&alice).await,
        vec![alice.device_id.clone()]
    );
    // The caller's own session is untouched.
    assert_ok(server.whoami(&alice.access_token).await);
}

#[tokio::test]
async fn delete_devices_in_bulk_requires_password_uia() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let a = server.login("alice", PW).await;
    let b = server.login("alice", PW).await;
    let keep = server.login("alice", PW).await;
    let body = json!({"devices": [a.device_id, b.device_id]});

    let first = server
        .post(
            "/_matrix/client/v3/delete_devices",
            alice.token(),
            body.clone(),
        )
        .await;
    expect_uia_challenge(&first, "m.login.password");
    assert_eq!(server.device_ids(&alice).await.len(), 4);

    let wrong = server
        .uia(
            Method::POST,
            "/_matrix/client/v3/delete_devices",
            alice.token(),
            body.clone(),
            |s| password_auth("alice", "wrong-password", s),
        )
        .await;
    assert!(
        wrong.0 == StatusCode::UNAUTHORIZED || wrong.0 == StatusCode::FORBIDDEN,
        "wrong password: {wrong:?}"
    );
    assert_eq!(wrong.1["errcode"], "M_FORBIDDEN", "{}", wrong.1);
    assert_eq!(server.device_ids(&alice).await.len(), 4);

    let resp = server
        .uia_password(
            Method::POST,
            "/_matrix/client/v3/delete_devices",
            &alice,
            body,
            PW,
        )
        .await;
    assert_eq!(assert_ok(resp), json!({}));
    for gone in [&a, &b] {
        assert_error(
            &server.whoami(&gone.access_token).await,
            401,
            "M_UNKNOWN_TOKEN",
        );
    }
    assert_ok(server.whoami(&keep.access_token).await);
    let mut expected = vec![alice.device_id.clone(), keep.device_id.clone()];
    expected.sort();
    assert_eq!(server.device_ids(&alice).await, expected);
}

#[tokio::test]
async fn devices_of_other_users_are_invisible() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let alice_dev = format!("/_matrix/client/v3/devices/{}", enc(&alice.device_id));

    // Bob cannot see or rename Alice's device.
    assert_error_status(&server.get(&alice_dev, bob.token()).await, 404);
    let rename = server
        .put(&alice_dev, bob.token(), json!({"display_name": "pwned"}))
        .await;
    assert!(
        rename.0 == StatusCode::NOT_FOUND || rename.0 == StatusCode::FORBIDDEN,
        "renaming another user's device: {rename:?}"
    );
    assert_ok(server.whoami(&alice.access_token).await);
    let own = assert_ok(server.get(&alice_dev, alice.token()).await);
    assert_ne!(own["display_name"], "pwned");
    assert_eq!(server.device_ids(&bob).await, vec![bob.device_id.clone()]);

    // An unknown device id is 404.
    let unknown = server
        .get("/_matrix/client/v3/devices/NOSUCHDEVICE", alice.token())
        .await;
    assert_error_status(&unknown, 404);
}
