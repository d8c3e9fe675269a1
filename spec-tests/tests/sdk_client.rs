//! A real client: matrix-sdk logs in to Feathur and uses the account API.

use spec_tests::{assert_ok, enc, install_crypto_provider, TestServer};

const PW: &str = "sdk-client-pw";

async fn sdk_client(server: &TestServer) -> matrix_sdk::Client {
    // matrix-sdk brings a second rustls provider; pick ring before building.
    install_crypto_provider();
    matrix_sdk::Client::builder()
        .homeserver_url(server.base_url())
        .build()
        .await
        .expect("building the matrix-sdk client")
}

#[tokio::test]
async fn matrix_sdk_logs_in_and_sets_display_name() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;

    let client = sdk_client(&server).await;
    let login = client
        .matrix_auth()
        .login_username("alice", PW)
        .initial_device_display_name("matrix-sdk test")
        .send()
        .await
        .expect("matrix-sdk login");
    assert_eq!(login.user_id.as_str(), alice.user_id);
    assert_ne!(login.device_id.as_str(), alice.device_id);
    assert_eq!(
        client.user_id().map(|u| u.to_string()),
        Some(alice.user_id.clone())
    );

    let me = client.whoami().await.expect("whoami through matrix-sdk");
    assert_eq!(me.user_id.as_str(), alice.user_id);
    assert_eq!(
        me.device_id.as_ref().map(|d| d.to_string()),
        Some(login.device_id.to_string())
    );

    // The sdk's device shows up for the HTTP session, with its name.
    let dev = assert_ok(
        server
            .get(
                &format!(
                    "/_matrix/client/v3/devices/{}",
                    enc(login.device_id.as_str())
                ),
                alice.token(),
            )
            .await,
    );
    assert_eq!(dev["display_name"], "matrix-sdk test");

    // Display name through the sdk's account API, read back both ways.
    let account = client.account();
    account
        .set_display_name(Some("Alice via SDK"))
        .await
        .expect("set_display_name");
    let name = account.get_display_name().await.expect("get_display_name");
    assert_eq!(name.as_deref(), Some("Alice via SDK"));
    let http = assert_ok(
        server
            .get(
                &format!(
                    "/_matrix/client/v3/profile/{}/displayname",
                    enc(&alice.user_id)
                ),
                None,
            )
            .await,
    );
    assert_eq!(http["displayname"], "Alice via SDK");

    // A name set over HTTP is what the sdk reads.
    assert_ok(
        server
            .put(
                &format!(
                    "/_matrix/client/v3/profile/{}/displayname",
                    enc(&alice.user_id)
                ),
                alice.token(),
                serde_json::json!({"displayname": "Alice via HTTP"}),
            )
            .await,
    );
    let name = account.get_display_name().await.expect("get_display_name");
    assert_eq!(name.as_deref(), Some("Alice via HTTP"));

    // Logging out through the sdk kills its token.
    let token = client.access_token().expect("sdk access token");
    client.logout().await.expect("sdk logout");
    let (status, _) = server.whoami(&token).await;
    assert_eq!(status.as_u16(), 401);
}
