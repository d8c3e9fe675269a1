//! Password change and account deactivation (Client-Server API §Account
//! registration and management).

use spec_tests::{
    assert_error, assert_ok, expect_uia_challenge, json, password_auth, Method, StatusCode,
    TestServer, Value,
};

const OLD_PW: &str = "old-password-1";
const NEW_PW: &str = "new-password-2";

#[tokio::test]
async fn change_password_logs_out_other_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice", OLD_PW).await;
    let other = server.login("alice", OLD_PW).await;
    let path = "/_matrix/client/v3/account/password";

    // UIA with m.login.password is required.
    let first = server
        .post(path, alice.token(), json!({"new_password": NEW_PW}))
        .await;
    let session = expect_uia_challenge(&first, "m.login.password");

    // A wrong current password is refused and changes nothing.
    let wrong = server
        .post(
            path,
            alice.token(),
            json!({"new_password": NEW_PW,
                   "auth": password_auth("alice", "not-my-password", &session)}),
        )
        .await;
    assert!(
        wrong.0 == StatusCode::UNAUTHORIZED || wrong.0 == StatusCode::FORBIDDEN,
        "wrong password: {wrong:?}"
    );
    assert_eq!(wrong.1["errcode"], "M_FORBIDDEN", "{}", wrong.1);
    server.login("alice", OLD_PW).await;
    let other2 = server.login("alice", OLD_PW).await;

    let resp = server
        .uia_password(
            Method::POST,
            path,
            &alice,
            json!({"new_password": NEW_PW}),
            OLD_PW,
        )
        .await;
    assert_eq!(assert_ok(resp), json!({}));

    // Old password fails, new one works.
    assert_error(
        &server.login_raw("alice", OLD_PW, None).await,
        403,
        "M_FORBIDDEN",
    );
    let fresh = server.login("alice", NEW_PW).await;

    // The caller keeps its session; other devices were logged out (default
    // logout_devices = true) and removed.
    assert_ok(server.whoami(&alice.access_token).await);
    for gone in [&other, &other2] {
        assert_error(
            &server.whoami(&gone.access_token).await,
            401,
            "M_UNKNOWN_TOKEN",
        );
    }
    let mut expected = vec![alice.device_id.clone(), fresh.device_id.clone()];
    expected.sort();
    assert_eq!(server.device_ids(&alice).await, expected);

    // logout_devices = false keeps the other sessions.
    let resp = server
        .uia_password(
            Method::POST,
            path,
            &alice,
            json!({"new_password": OLD_PW, "logout_devices": false}),
            NEW_PW,
        )
        .await;
    assert_eq!(assert_ok(resp), json!({}));
    assert_ok(server.whoami(&fresh.access_token).await);
    assert_ok(server.whoami(&alice.access_token).await);
    server.login("alice", OLD_PW).await;
    assert_error(
        &server.login_raw("alice", NEW_PW, None).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn deactivate_account() {
    let server = TestServer::start().await;
    let eve = server.register("eve", OLD_PW).await;
    let second = server.login("eve", OLD_PW).await;
    let path = "/_matrix/client/v3/account/deactivate";

    let first = server.post(path, eve.token(), json!({})).await;
    expect_uia_challenge(&first, "m.login.password");
    // Still active after the challenge.
    assert_ok(server.whoami(&eve.access_token).await);

    let resp = server
        .uia_password(Method::POST, path, &eve, json!({}), OLD_PW)
        .await;
    let body = assert_ok(resp);
    let unbind = body["id_server_unbind_result"].as_str();
    assert!(
        matches!(unbind, Some("success") | Some("no-support")),
        "id_server_unbind_result is required: {body}"
    );

    // Login is refused as deactivated.
    assert_error(
        &server.login_raw("eve", OLD_PW, None).await,
        403,
        "M_USER_DEACTIVATED",
    );
    // Existing sessions no longer work.
    for s in [&eve, &second] {
        let (status, body) = server.whoami(&s.access_token).await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "token of a deactivated user still works: {status} {body}"
        );
    }
    // The user id stays taken.
    assert_error(
        &server.username_available("eve").await,
        400,
        "M_USER_IN_USE",
    );
    let again = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "eve", "password": "another-pw"}),
        )
        .await;
    assert_error(&again, 400, "M_USER_IN_USE");
}

#[tokio::test]
async fn deactivate_with_wrong_password_keeps_the_account() {
    let server = TestServer::start().await;
    let frank = server.register("frank", OLD_PW).await;
    let (status, body): (StatusCode, Value) = server
        .uia(
            Method::POST,
            "/_matrix/client/v3/account/deactivate",
            frank.token(),
            json!({}),
            |s| password_auth(&frank.user_id, "bad-password", s),
        )
        .await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "wrong password: {status} {body}"
    );
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert_ok(server.whoami(&frank.access_token).await);
    server.login("frank", OLD_PW).await;
}
