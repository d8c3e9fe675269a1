//! A second, independent client: matrix-nio (Python) converses through
//! Feathur's /sync. `.ci/run` installs it in a virtual environment and sets
//! `FEATHUR_TEST_PYTHON`; without it the test says so, and fails under CI.

use std::process::Command;

use spec_tests::TestServer;

/// The Python that has matrix-nio: `$FEATHUR_TEST_PYTHON`, else none.
fn python_with_nio() -> Option<String> {
    let python = std::env::var("FEATHUR_TEST_PYTHON").ok()?;
    let ok = Command::new(&python)
        .args(["-c", "import nio"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

#[tokio::test]
async fn matrix_nio_users_converse() {
    let Some(python) = python_with_nio() else {
        let message = "matrix-nio is missing: set FEATHUR_TEST_PYTHON to a Python with \
                       matrix-nio installed (.ci/run does this)";
        spec_tests::missing_program(message);
        return;
    };
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/nio_conversation.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(server.base_url())
        .output()
        .await
        .expect("running the matrix-nio script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "matrix-nio conversation failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("received once each, in order"), "{stdout}");
}
