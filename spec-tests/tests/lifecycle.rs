//! Durability across restarts and crashes, config validation, and the admin
//! CLI (`feathur config|db|user|token …`).

use std::time::Duration;

use spec_tests::{assert_error, assert_ok, enc, json, output_text, Method, StatusCode, TestServer};

const PW: &str = "lifecycle-pw";

#[tokio::test]
async fn state_survives_clean_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let laptop = server.login_raw("alice", PW, Some("Laptop")).await;
    let laptop = assert_ok(laptop);
    let laptop_token = laptop["access_token"].as_str().unwrap().to_owned();
    let laptop_dev = laptop["device_id"].as_str().unwrap().to_owned();
    let gone = server.login("alice", PW).await;
    assert_ok(
        server
            .post("/_matrix/client/v3/logout", gone.token(), json!({}))
            .await,
    );
    let data_path = format!(
        "/_matrix/client/v3/user/{}/account_data/org.example.prefs",
        enc(&alice.user_id)
    );
    assert_ok(
        server
            .put(&data_path, alice.token(), json!({"lang": "eo"}))
            .await,
    );
    let name_path = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        enc(&alice.user_id)
    );
    assert_ok(
        server
            .put(&name_path, alice.token(), json!({"displayname": "Alice"}))
            .await,
    );

    let status = server.stop();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    server.restart().await;

    let me = assert_ok(server.whoami(&alice.access_token).await);
    assert_eq!(me["user_id"], alice.user_id.as_str());
    assert_eq!(me["device_id"], alice.device_id.as_str());
    let me = assert_ok(server.whoami(&laptop_token).await);
    assert_eq!(me["device_id"], laptop_dev.as_str());
    assert_error(
        &server.whoami(&gone.access_token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    let dev = assert_ok(
        server
            .get(
                &format!("/_matrix/client/v3/devices/{}", enc(&laptop_dev)),
                alice.token(),
            )
            .await,
    );
    assert_eq!(dev["display_name"], "Laptop");
    let mut expected = vec![alice.device_id.clone(), laptop_dev.clone()];
    expected.sort();
    assert_eq!(server.device_ids(&alice).await, expected);
    assert_eq!(
        assert_ok(server.get(&data_path, alice.token()).await),
        json!({"lang": "eo"})
    );
    assert_eq!(
        assert_ok(server.get(&name_path, None).await),
        json!({"displayname": "Alice"})
    );
    server.login("alice", PW).await;
    assert_error(
        &server.login_raw("alice", "nope", None).await,
        403,
        "M_FORBIDDEN",
    );

    // A second clean stop also exits 0.
    let status = server.stop();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill9() {
    let mut server = TestServer::start().await;
    let bob = server.register("bob", PW).await;
    server.kill9();
    server.restart().await;
    let me = assert_ok(server.whoami(&bob.access_token).await);
    assert_eq!(me["user_id"], bob.user_id.as_str());
    let phone = server.login("bob", PW).await;

    let data_path = format!(
        "/_matrix/client/v3/user/{}/account_data/org.example.crash",
        enc(&bob.user_id)
    );
    assert_ok(server.put(&data_path, bob.token(), json!({"n": 1})).await);
    let resp = server
        .uia_password(
            Method::POST,
            "/_matrix/client/v3/account/password",
            &bob,
            json!({"new_password": "after-crash-pw"}),
            PW,
        )
        .await;
    assert_ok(resp);
    server.kill9();
    server.restart().await;

    assert_eq!(
        assert_ok(server.get(&data_path, bob.token()).await),
        json!({"n": 1})
    );
    assert_error(
        &server.whoami(&phone.access_token).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(&server.login_raw("bob", PW, None).await, 403, "M_FORBIDDEN");
    server.login("bob", "after-crash-pw").await;
}

#[tokio::test]
async fn second_server_on_same_data_dir_is_refused() {
    let first = TestServer::start().await;
    let alice = first.register("alice", PW).await;
    let second = TestServer::builder()
        .data_dir(first.data_dir())
        .startup_timeout(Duration::from_secs(20))
        .try_start()
        .await;
    let failure = match second {
        Ok(_) => panic!("a second feathur served the same data dir"),
        Err(f) => f,
    };
    let status = failure
        .status
        .expect("the second server must exit, not hang");
    assert!(!status.success(), "second server exited with {status}");
    assert!(
        failure.elapsed < Duration::from_secs(10),
        "took {:?} to give up",
        failure.elapsed
    );
    let log = failure.log.to_lowercase();
    assert!(
        log.contains("lock") || log.contains("in use"),
        "the message should say the database is locked or in use:\n{}",
        failure.log
    );
    // The first server is unharmed.
    assert_ok(first.whoami(&alice.access_token).await);
}

async fn assert_bad_config(extra: &str, key: &str) {
    let mut server = TestServer::builder().toml(extra).prepare();
    let check = server.run_cli(&["config", "check"], None);
    assert!(!check.status.success(), "config check accepted {extra:?}");
    assert!(
        output_text(&check).contains(key),
        "config check should name `{key}`:\n{}",
        output_text(&check)
    );
    let failure = match server.try_restart().await {
        Ok(()) => panic!("feathur started with a bad config: {extra:?}"),
        Err(f) => f,
    };
    assert!(
        failure.status.is_some_and(|s| !s.success()),
        "bad config must make serve exit non-zero: {:?}",
        failure.status
    );
    assert!(
        failure.log.contains(key),
        "the error should name `{key}`:\n{}",
        failure.log
    );
}

#[tokio::test]
async fn unknown_config_key_is_rejected() {
    assert_bad_config("[client]\nlistne = \"127.0.0.1:1\"", "listne").await;
}

#[tokio::test]
async fn wrongly_typed_config_value_is_rejected() {
    assert_bad_config("[client]\nmax_request_bytes = \"big\"", "max_request_bytes").await;
}

#[tokio::test]
async fn config_check_masks_secrets() {
    let server = TestServer::builder()
        .toml(
            "[registration]\nshared_secret = \"sup3r-s3cret-value\"\n\
             tokens = [\"tokValueNeverPrinted\"]",
        )
        .prepare();
    let out = server.run_cli(&["config", "check"], None);
    let text = output_text(&out);
    assert!(out.status.success(), "config check failed:\n{text}");
    assert!(
        text.contains("shared_secret"),
        "effective config not printed:\n{text}"
    );
    assert!(
        text.contains(&server.server_name()),
        "server_name not printed:\n{text}"
    );
    assert!(
        !text.contains("sup3r-s3cret-value"),
        "shared_secret leaked:\n{text}"
    );
    assert!(
        !text.contains("tokValueNeverPrinted"),
        "registration token leaked:\n{text}"
    );
}

#[tokio::test]
async fn db_check_after_stop() {
    let mut server = TestServer::start().await;
    server.register("alice", PW).await;
    let status = server.stop();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    let out = server.run_cli(&["db", "check"], None);
    let text = output_text(&out);
    assert!(out.status.success(), "db check failed:\n{text}");
    assert!(
        text.to_lowercase().contains("ok"),
        "db check should say OK:\n{text}"
    );
    // Read-only: the server still starts and has alice.
    server.restart().await;
    server.login("alice", PW).await;
}

#[tokio::test]
async fn cli_user_management() {
    let mut server = TestServer::builder().prepare();
    let create = |s: &TestServer, name: &str, pw: &str, admin: bool| {
        let mut args = vec!["user", "create", name, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        s.run_cli(&args, Some(&format!("{pw}\n")))
    };
    let out = create(&server, "bob", "bob-pw-1", false);
    assert!(out.status.success(), "user create:\n{}", output_text(&out));
    let out = create(&server, "carol", "carol-pw", true);
    assert!(
        out.status.success(),
        "user create --admin:\n{}",
        output_text(&out)
    );
    let dup = create(&server, "bob", "other", false);
    assert!(!dup.status.success(), "creating bob twice succeeded");

    server.restart().await;
    let bob = server.login("bob", "bob-pw-1").await;
    assert_eq!(bob.user_id, server.user_id("bob"));
    let carol = server.login("carol", "carol-pw").await;
    assert_eq!(carol.user_id, server.user_id("carol"));
    assert_error(
        &server.username_available("bob").await,
        400,
        "M_USER_IN_USE",
    );

    assert!(server.stop().success(), "SIGTERM must exit 0");
    let out = server.run_cli(
        &["user", "reset-password", "bob", "--password-stdin"],
        Some("bob-pw-2\n"),
    );
    assert!(
        out.status.success(),
        "reset-password:\n{}",
        output_text(&out)
    );
    server.restart().await;
    assert_error(
        &server.login_raw("bob", "bob-pw-1", None).await,
        403,
        "M_FORBIDDEN",
    );
    server.login("bob", "bob-pw-2").await;

    assert!(server.stop().success(), "SIGTERM must exit 0");
    let out = server.run_cli(&["user", "deactivate", "bob"], None);
    assert!(out.status.success(), "deactivate:\n{}", output_text(&out));
    server.restart().await;
    assert_error(
        &server.login_raw("bob", "bob-pw-2", None).await,
        403,
        "M_USER_DEACTIVATED",
    );
    server.login("carol", "carol-pw").await;
}

/// The token printed by `feathur token create`: the last word of its output.
fn printed_token(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("token create printed nothing"));
    last.split_whitespace().last().unwrap().to_owned()
}

#[tokio::test]
async fn cli_token_is_single_use() {
    let mut server = TestServer::builder()
        .toml("[registration]\nopen = false\ntokens = []")
        .prepare();
    let out = server.run_cli(&["token", "create", "--uses", "1"], None);
    assert!(out.status.success(), "token create:\n{}", output_text(&out));
    let token = printed_token(&out.stdout);
    assert!(
        !token.is_empty()
            && token.len() <= 64
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)),
        "token must be 1-64 chars of [A-Za-z0-9._~-]: {token:?}"
    );
    server.restart().await;

    let validity = format!(
        "/_matrix/client/v1/register/m.login.registration_token/validity?token={}",
        enc(&token)
    );
    assert_eq!(
        assert_ok(server.get(&validity, None).await),
        json!({"valid": true})
    );
    let first = server
        .register_with(
            json!({"username": "first", "password": PW}),
            |s| json!({"type": "m.login.registration_token", "token": token, "session": s}),
        )
        .await;
    let first = assert_ok(first);
    assert_eq!(first["user_id"], server.user_id("first").as_str());
    assert_ok(server.whoami(first["access_token"].as_str().unwrap()).await);

    // Used up: invalid now (or 403 if registration is now closed altogether).
    let (status, body) = server.get(&validity, None).await;
    assert!(
        (status == StatusCode::OK && body == json!({"valid": false}))
            || (status == StatusCode::FORBIDDEN && body["errcode"] == "M_FORBIDDEN"),
        "validity of a used-up token: {status} {body}"
    );
    // A second registration fails, either up front (403: no way to register
    // left) or at the token stage.
    let second = json!({"username": "second", "password": PW});
    let (status, challenge) = server
        .post("/_matrix/client/v3/register", None, second.clone())
        .await;
    let (status, body) = match challenge["session"].as_str() {
        Some(session) if status == StatusCode::UNAUTHORIZED => {
            let mut with_auth = second;
            with_auth["auth"] = json!({"type": "m.login.registration_token",
                                       "token": token, "session": session});
            server
                .post("/_matrix/client/v3/register", None, with_auth)
                .await
        }
        _ => (status, challenge),
    };
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
        "a used-up token registered again: {status} {body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(
        assert_ok(server.username_available("second").await),
        json!({"available": true})
    );
}

#[tokio::test]
async fn env_overrides_the_config_file() {
    let server = TestServer::builder()
        .env("FEATHUR_CLIENT__MAX_REQUEST_BYTES", "2048")
        .start()
        .await;
    let body = |n: usize| {
        serde_json::to_vec(&json!({"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "nobody"},
            "password": "p".repeat(n)}))
        .unwrap()
    };
    let big = server
        .raw(
            Method::POST,
            "/_matrix/client/v3/login",
            None,
            &[],
            Some(body(8192)),
        )
        .await;
    assert_eq!(big.status.as_u16(), 413, "{}", big.text());
    assert_eq!(big.json().unwrap()["errcode"], "M_TOO_LARGE");
    let small = server
        .raw(
            Method::POST,
            "/_matrix/client/v3/login",
            None,
            &[],
            Some(body(512)),
        )
        .await;
    assert_eq!(small.status.as_u16(), 403, "{}", small.text());
}
