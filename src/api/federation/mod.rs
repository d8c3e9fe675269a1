//! `/_matrix/federation/*` and `/_matrix/key/*`, served on the federation
//! listener: thin handlers that extract, call the domain and respond.
//!
//! Only what needs no request signature exists yet (the key and version
//! endpoints); every other path answers 404 `M_UNRECOGNIZED` from the shared
//! fallback, which peers read as "not supported".

mod keys;
mod version;

use axum::Router;

use crate::{api::ruma::RumaRouter, AppState};

pub fn router() -> Router<AppState> {
    Router::new().ruma(keys::server_keys).ruma(version::version)
}
