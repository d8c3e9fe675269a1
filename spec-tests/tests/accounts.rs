//! Registration, login, devices and logout (Client-Server API §Login,
//! §Account registration, §Device management).

use spec_tests::{
    assert_error, assert_error_status, assert_ok, enc, expect_uia_challenge, json, uia_flows,
    StatusCode, TestServer, Value,
};

const PW: &str = "correct horse battery";

fn devices_of(body: &Value) -> &Vec<Value> {
    body["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices array: {body}"))
}

#[tokio::test]
async fn register_whoami_login_devices_and_logout() {
    let server = TestServer::start().await;

    // Registration: 401 challenge offering m.login.dummy, then success.
    let challenge = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "alice", "password": PW}),
        )
        .await;
    expect_uia_challenge(&challenge, "m.login.dummy");
    let alice = server.register("alice", PW).await;
    assert_eq!(alice.user_id, server.user_id("alice"));
    assert!(!alice.access_token.is_empty() && !alice.device_id.is_empty());

    let me = assert_ok(server.whoami(&alice.access_token).await);
    assert_eq!(me["user_id"], alice.user_id.as_str());
    assert_eq!(me["device_id"], alice.device_id.as_str());
    assert!(
        me.get("is_guest").is_none_or(|g| g == &json!(false)),
        "a registered user is not a guest: {me}"
    );

    // GET /login lists m.login.password.
    let flows = assert_ok(server.get("/_matrix/client/v3/login", None).await);
    let types: Vec<&str> = flows["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no flows: {flows}"))
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert!(types.contains(&"m.login.password"), "login flows: {flows}");

    // Password login by localpart, with a device display name.
    let laptop = server.login_raw("alice", PW, Some("Laptop")).await;
    let laptop = assert_ok(laptop);
    assert_eq!(laptop["user_id"], alice.user_id.as_str());
    let laptop_token = laptop["access_token"].as_str().unwrap().to_owned();
    let laptop_dev = laptop["device_id"].as_str().unwrap().to_owned();
    assert_ne!(laptop_dev, alice.device_id);
    assert_ne!(laptop_token, alice.access_token);
    let me = assert_ok(server.whoami(&laptop_token).await);
    assert_eq!(me["device_id"], laptop_dev.as_str());

    // Login by full user id.
    let phone = server.login(&alice.user_id, PW).await;
    assert_eq!(phone.user_id, alice.user_id);

    // All three devices are listed.
    let list = assert_ok(
        server
            .get("/_matrix/client/v3/devices", alice.token())
            .await,
    );
    let devices = devices_of(&list);
    assert_eq!(devices.len(), 3, "devices: {list}");
    let laptop_entry = devices
        .iter()
        .find(|d| d["device_id"] == laptop_dev.as_str())
        .unwrap_or_else(|| panic!("new device missing from {list}"));
    assert_eq!(laptop_entry["display_name"], "Laptop");
    let mut ids = server.device_ids(&alice).await;
    let mut expected = vec![
        alice.device_id.clone(),
        laptop_dev.clone(),
        phone.device_id.clone(),
    ];
    expected.sort();
    ids.sort();
    assert_eq!(ids, expected);

    // Rename a device, read it back.
    let path = format!("/_matrix/client/v3/devices/{}", enc(&laptop_dev));
    let renamed = server
        .put(&path, alice.token(), json!({"display_name": "Work laptop"}))
        .await;
    assert_eq!(assert_ok(renamed), json!({}));
    let dev = assert_ok(server.get(&path, alice.token()).await);
    assert_eq!(dev["device_id"], laptop_dev.as_str());
    assert_eq!(dev["display_name"], "Work laptop");

    // Logout kills that token and its device; the others live on.
    let out = server
        .post("/_matrix/client/v3/logout", Some(&laptop_token), json!({}))
        .await;
    assert_eq!(assert_ok(out), json!({}));
    assert_error(&server.whoami(&laptop_token).await, 401, "M_UNKNOWN_TOKEN");
    assert_ok(server.whoami(&alice.access_token).await);
    assert!(!server.device_ids(&alice).await.contains(&laptop_dev));
    assert_error_status(&server.get(&path, alice.token()).await, 404);

    // logout/all kills every token, including the caller's.
    let out = server
        .post("/_matrix/client/v3/logout/all", phone.token(), json!({}))
        .await;
    assert_eq!(assert_ok(out), json!({}));
    assert_error(
        &server.whoami(&alice.access_token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &server.whoami(&phone.access_token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // A fresh login sees only its own device.
    let again = server.login("alice", PW).await;
    assert_eq!(
        server.device_ids(&again).await,
        vec![again.device_id.clone()]
    );
}

#[tokio::test]
async fn login_with_existing_device_id_replaces_its_token() {
    let server = TestServer::start().await;
    server.register("alice", PW).await;
    let body = |name: &str| {
        json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": PW,
            "device_id": "MYPHONE",
            "initial_device_display_name": name,
        })
    };
    let first = assert_ok(
        server
            .post("/_matrix/client/v3/login", None, body("Phone"))
            .await,
    );
    assert_eq!(first["device_id"], "MYPHONE");
    let first_token = first["access_token"].as_str().unwrap().to_owned();
    let second = assert_ok(
        server
            .post("/_matrix/client/v3/login", None, body("Ignored"))
            .await,
    );
    assert_eq!(second["device_id"], "MYPHONE");
    let second_token = second["access_token"].as_str().unwrap();
    assert_ne!(first_token, second_token);
    // "If the client sets the device_id, the server will invalidate any access
    // and refresh tokens previously assigned to that device."
    assert_error(&server.whoami(&first_token).await, 401, "M_UNKNOWN_TOKEN");
    let me = assert_ok(server.whoami(second_token).await);
    assert_eq!(me["device_id"], "MYPHONE");
}

#[tokio::test]
async fn username_availability_and_invalid_names() {
    let server = TestServer::start().await;
    let free = assert_ok(server.username_available("carol").await);
    assert_eq!(free, json!({"available": true}));

    server.register("carol", PW).await;
    assert_error(
        &server.username_available("carol").await,
        400,
        "M_USER_IN_USE",
    );
    // Registering a taken name fails before any UIA.
    let taken = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "carol", "password": PW}),
        )
        .await;
    assert_error(&taken, 400, "M_USER_IN_USE");

    for bad in ["bad:name", "has space"] {
        assert_error(
            &server.username_available(bad).await,
            400,
            "M_INVALID_USERNAME",
        );
    }
    let bad = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "bad:name", "password": PW}),
        )
        .await;
    assert_error(&bad, 400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn inhibit_login_and_guest_registration() {
    let server = TestServer::start().await;
    let resp = server
        .register_with(
            json!({"username": "dora", "password": PW, "inhibit_login": true}),
            |s| json!({"type": "m.login.dummy", "session": s}),
        )
        .await;
    let body = assert_ok(resp);
    assert_eq!(body["user_id"], server.user_id("dora").as_str());
    assert!(body.get("access_token").is_none(), "inhibit_login: {body}");
    // The account exists and can log in.
    let dora = server.login("dora", PW).await;
    assert_eq!(dora.user_id, server.user_id("dora"));
    assert_eq!(server.device_ids(&dora).await, vec![dora.device_id.clone()]);

    // Guest registration is not offered: 403.
    let (status, body) = server
        .post("/_matrix/client/v3/register?kind=guest", None, json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "guest registration: {body}");
    let code = body["errcode"].as_str().unwrap_or_default();
    assert!(
        code == "M_GUEST_ACCESS_FORBIDDEN" || code == "M_FORBIDDEN",
        "guest registration errcode: {body}"
    );
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn token_only_registration() {
    let server =
        TestServer::start_with_toml("[registration]\nopen = false\ntokens = [\"tok1\"]").await;
    let validity = |t: &str| {
        format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={t}")
    };

    let first = server
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "erin", "password": PW}),
        )
        .await;
    let session = expect_uia_challenge(&first, "m.login.registration_token");
    // No flow gets around the token (e.g. a dummy-only flow).
    for flow in uia_flows(&first.1) {
        assert!(
            flow.contains(&"m.login.registration_token".to_owned()),
            "closed registration must require a token in every flow: {}",
            first.1
        );
    }

    assert_eq!(
        assert_ok(server.get(&validity("tok1"), None).await),
        json!({"valid": true})
    );
    assert_eq!(
        assert_ok(server.get(&validity("nope"), None).await),
        json!({"valid": false})
    );

    // Dummy auth does not open a closed server.
    let body = json!({"username": "erin", "password": PW,
        "auth": {"type": "m.login.dummy", "session": session}});
    let (status, resp) = server.post("/_matrix/client/v3/register", None, body).await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "dummy auth on a closed server: {status} {resp}"
    );
    assert!(resp.get("access_token").is_none(), "{resp}");
    // A wrong token fails too.
    let (status, resp) = server
        .register_with(
            json!({"username": "erin", "password": PW}),
            |s| json!({"type": "m.login.registration_token", "token": "wrong", "session": s}),
        )
        .await;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "wrong registration token: {status} {resp}"
    );
    assert_eq!(
        assert_ok(server.username_available("erin").await),
        json!({"available": true})
    );

    // The right token registers the account.
    let resp = server
        .register_with(
            json!({"username": "erin", "password": PW}),
            |s| json!({"type": "m.login.registration_token", "token": "tok1", "session": s}),
        )
        .await;
    let body = assert_ok(resp);
    assert_eq!(body["user_id"], server.user_id("erin").as_str());
    let token = body["access_token"].as_str().expect("access_token");
    let me = assert_ok(server.whoami(token).await);
    assert_eq!(me["user_id"], server.user_id("erin").as_str());
}
