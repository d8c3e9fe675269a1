//! A third, independent client: matrix-js-sdk (Node.js, the SDK under
//! Element Web) runs its normal sync loop against Feathur. `.ci/run`
//! installs the pinned SDK (`clients/js/package.json`) and sets
//! `FEATHUR_TEST_JS_SDK` to where it lives; without it the test says so, and
//! fails under CI.

use std::{path::Path, process::Command};

use spec_tests::TestServer;

/// The directory holding `node_modules/matrix-js-sdk`, and a working `node`.
fn js_sdk_dir() -> Option<String> {
    let dir = std::env::var("FEATHUR_TEST_JS_SDK").ok()?;
    let installed = Path::new(&dir)
        .join("node_modules/matrix-js-sdk/package.json")
        .exists();
    let node = Command::new("node")
        .arg("--version")
        .status()
        .is_ok_and(|s| s.success());
    (installed && node).then_some(dir)
}

#[tokio::test]
async fn matrix_js_sdk_users_converse() {
    let Some(sdk_dir) = js_sdk_dir() else {
        let message = "matrix-js-sdk is missing: set FEATHUR_TEST_JS_SDK to a directory where \
                       `npm ci` ran on spec-tests/clients/js (.ci/run does this), with node on PATH";
        spec_tests::missing_program(message);
        return;
    };
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js/conversation.mjs");
    let output = tokio::process::Command::new("node")
        .arg(script)
        .arg(server.base_url())
        .arg(&sdk_dir)
        .output()
        .await
        .expect("running the matrix-js-sdk script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "matrix-js-sdk conversation failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("received once each, in order"), "{stdout}");
}
