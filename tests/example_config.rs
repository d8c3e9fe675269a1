//! The shipped example configuration must stay a valid configuration, and
//! `feathur config check` must say what is wrong with an invalid one.

use std::process::Command;

fn feathur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_feathur"))
}

#[test]
fn example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/feathur.example.toml");
    let output = feathur()
        .args(["config", "check", "--config", example])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "config check failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("server_name = \"localhost:8008\""),
        "{stdout}"
    );
}

#[test]
fn config_check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[registration]\nopne = true\n").unwrap();
    let output = feathur()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("opne"), "{stderr}");
}
