//! Black-box test harness for Feathur.
//!
//! Each test starts its own `feathur serve` process on a fresh temp dir and a
//! free loopback port, and talks to it over plain HTTP:
//!
//! ```no_run
//! # async fn demo() {
//! use spec_tests::{assert_ok, TestServer};
//! let server = TestServer::start().await;
//! let alice = server.register("alice", "secret-pw").await;
//! let me = assert_ok(server.whoami(&alice.access_token).await);
//! assert_eq!(me["user_id"], alice.user_id.as_str());
//! # }
//! ```
//!
//! The binary is `$FEATHUR_BIN`, else `target/<profile>/feathur` next to the
//! test executable's `deps/` directory (`cargo test --workspace` builds it).
//! Set `FEATHUR_TEST_KEEP=1` to keep a failed test's temp dir.

mod http;
mod matrix;
mod rooms;
mod server;
mod synapse;
mod util;

pub use http::{enc, install_crypto_provider, HttpClient, Method, RawResponse, StatusCode};
pub use matrix::{
    assert_error, assert_error_status, assert_ok, expect_uia_challenge, localpart, password_auth,
    uia_flows, Session,
};
pub use serde_json::{json, Value};
pub use server::{PeerName, ServerBuilder, StartFailure, TestServer, DEFAULT_STARTUP_TIMEOUT};
pub use synapse::{synapse_python, synapse_python_or_report, SynapseServer};
pub use util::{feathur_bin, free_port, merge_toml, missing_program, output_text, tail};
