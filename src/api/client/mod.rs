//! `/_matrix/client/*` and `/.well-known/matrix/*`: thin handlers that extract,
//! call the domain and map the result.

mod account;
mod account_data;
mod context;
mod devices;
pub(crate) mod directory;
mod discovery;
mod ephemeral;
mod keys;
mod membership;
mod presence;
mod profile;
mod push;
mod redaction;
mod relations;
mod room_keys;
mod rooms;
mod session;
mod sync;
mod to_device;

use axum::{
    routing::{any, get},
    Router,
};

use crate::{api::ruma::RumaRouter, AppState};

pub use discovery::SUPPORTED_VERSIONS;

pub fn router() -> Router<AppState> {
    Router::new()
        .ruma(discovery::versions)
        .ruma(discovery::capabilities)
        .route(
            "/.well-known/matrix/client",
            get(discovery::well_known_client),
        )
        .route(
            "/.well-known/matrix/server",
            get(discovery::well_known_server),
        )
        .ruma(account::register)
        .ruma(account::username_available)
        .ruma(account::registration_token_validity)
        .ruma(account::whoami)
        .ruma(account::change_password)
        .ruma(account::deactivate)
        .ruma(session::login_types)
        .ruma(session::login)
        .ruma(session::logout)
        .ruma(session::logout_all)
        .ruma(devices::list)
        .ruma(devices::get)
        .ruma(devices::update)
        .ruma(devices::delete)
        .ruma(devices::delete_many)
        .ruma(profile::get_profile)
        .ruma(profile::get_field)
        .ruma(profile::set_field)
        .ruma(profile::delete_field)
        .ruma(account_data::get_global)
        .ruma(account_data::set_global)
        .ruma(account_data::get_room)
        .ruma(account_data::set_room)
        .ruma(account_data::tags)
        .ruma(account_data::put_tag)
        .ruma(account_data::delete_tag)
        .ruma(rooms::create)
        .ruma(rooms::send_message)
        .ruma(rooms::send_state)
        .ruma(rooms::get_state_event)
        .ruma(rooms::get_state)
        .ruma(rooms::get_event)
        .ruma(rooms::messages)
        .ruma(rooms::upgrade)
        .ruma(membership::join_by_id)
        .ruma(membership::join_by_id_or_alias)
        .ruma(membership::invite)
        .ruma(membership::knock)
        .ruma(membership::leave)
        .ruma(membership::kick)
        .ruma(membership::ban)
        .ruma(membership::unban)
        .ruma(membership::forget)
        .ruma(membership::joined)
        .ruma(membership::members)
        .ruma(membership::joined_members_list)
        .ruma(directory::set_alias)
        .ruma(directory::get_alias)
        .ruma(directory::delete_alias)
        .ruma(directory::room_aliases)
        .ruma(directory::get_visibility)
        .ruma(directory::set_visibility)
        .ruma(directory::public_rooms)
        .ruma(directory::public_rooms_filtered)
        .ruma(redaction::redact)
        .ruma(relations::relations)
        .ruma(relations::relations_with_rel_type)
        .ruma(relations::relations_with_rel_type_and_event_type)
        .ruma(relations::threads)
        .ruma(context::context)
        .ruma_with_query(sync::sync)
        .ruma(sync::create_filter)
        .ruma(sync::get_filter)
        .ruma(push::get_all)
        .ruma(push::get_global)
        .ruma(push::get_rule)
        .ruma(push::set_rule)
        .ruma(push::delete_rule)
        .ruma(push::get_enabled)
        .ruma(push::set_enabled)
        .ruma(push::get_actions)
        .ruma(push::set_actions)
        .ruma(ephemeral::typing)
        .ruma(ephemeral::receipt)
        .ruma(ephemeral::read_markers)
        .ruma(presence::set_status)
        .ruma(presence::get_status)
        .ruma(to_device::send)
        .ruma(keys::upload)
        .ruma(keys::query)
        .ruma(keys::claim)
        .ruma(keys::changes)
        .ruma(keys::upload_signing_keys)
        .ruma(keys::upload_signatures)
        .route(DEHYDRATED_DEVICE, any(keys::dehydrated_device))
        .route(
            &format!("{DEHYDRATED_DEVICE}/{{device_id}}/events"),
            any(keys::dehydrated_device),
        )
        .ruma(room_keys::create_version)
        .ruma(room_keys::latest_version)
        .ruma(room_keys::get_version)
        .ruma(room_keys::update_version)
        .ruma(room_keys::delete_version)
        .ruma(room_keys::put_keys)
        .ruma(room_keys::put_room_keys)
        .ruma(room_keys::put_session_key)
        .ruma(room_keys::get_keys)
        .ruma(room_keys::get_room_keys)
        .ruma(room_keys::get_session_key)
        .ruma(room_keys::delete_keys)
        .ruma(room_keys::delete_room_keys)
        .ruma(room_keys::delete_session_key)
}

/// MSC3814's dehydrated device endpoint, answered `M_UNRECOGNIZED`.
const DEHYDRATED_DEVICE: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
