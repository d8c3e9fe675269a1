//! `/_matrix/federation/*` and `/_matrix/key/*`, served on the federation
//! listener: thin handlers that extract, call the domain and respond.
//! Every endpoint but the key and version ones checks the caller's
//! `X-Matrix` signature before anything else (`api::ruma`).

mod events;
mod keys;
pub(crate) mod membership;
mod query;
mod send;
mod user;
mod version;

use axum::Router;

use crate::{api::ruma::RumaRouter, error::Error, federation::Federation, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .ruma(keys::server_keys)
        .ruma(keys::notary_one)
        .ruma(keys::notary_batch)
        .ruma(version::version)
        .ruma(send::send_transaction)
        .ruma(membership::make_join)
        .ruma(membership::send_join)
        .ruma(membership::make_leave)
        .ruma(membership::send_leave)
        .ruma(membership::invite)
        .ruma(membership::make_knock)
        .ruma(membership::send_knock)
        .ruma(events::event)
        .ruma(events::state)
        .ruma(events::state_ids)
        .ruma(events::event_auth)
        .ruma(events::missing_events)
        .ruma(events::backfill)
        .ruma(query::directory)
        .ruma(query::profile)
        .ruma(query::public_rooms)
        .ruma(query::public_rooms_filtered)
        .ruma(user::keys_query)
        .ruma(user::keys_claim)
        .ruma(user::devices)
}

/// The federation service; only mounted when it exists, but typed as
/// optional in `Services`.
fn federation_of(state: &AppState) -> Result<&Federation, Error> {
    state
        .federation
        .as_deref()
        .ok_or_else(|| Error::unrecognized("Federation is not enabled on this server"))
}
