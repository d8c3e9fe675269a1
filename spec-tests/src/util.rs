//! Small helpers shared by the harness and the tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;

/// The `feathur` binary under test: `$FEATHUR_BIN`, else `feathur` next to
/// the directory holding the test executable (`target/debug/deps/..`).
pub fn feathur_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FEATHUR_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "FEATHUR_BIN={} does not exist", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a parent dir");
    let bin = deps.join("..").join("feathur");
    assert!(
        bin.is_file(),
        "the feathur binary is missing at {}: build it first: `cargo build --bin feathur` \
         (`cargo test --workspace` builds it too), or set FEATHUR_BIN",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, read and released; a tiny race is possible).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// stdout then stderr of a finished command, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Deep-merges `extra` into `base`: tables merge key by key, anything else
/// is replaced.
pub fn merge_toml(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge_toml(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Reports a test that cannot run because an outside program is missing:
/// a failure when `CI` is set (`.ci/run` sets it, so CI never skips),
/// otherwise a `NOT RUN` line in the test output. The line is written to
/// the process's stderr directly: the harness shows captured output of
/// failed tests only, so `eprintln!` would hide it.
pub fn missing_program(message: &str) {
    use std::io::Write as _;
    assert!(std::env::var_os("CI").is_none(), "{message}");
    let _ = writeln!(std::io::stderr().lock(), "NOT RUN: {message}");
}
