//! Feathur, a Matrix homeserver. `docs/architecture.md` walks through the layout;
//! every import points down: `api` → domains (`accounts`, …) → `storage` / `feathur_federation`.

pub mod accounts;
pub mod api;
pub mod cli;
pub mod config;
pub mod directory;
pub mod e2ee;
pub mod error;
pub mod federation;
pub mod presence;
pub mod push;
pub mod receipts;
pub mod rooms;
pub mod sending;
pub mod server;
pub mod server_keys;
pub mod storage;
pub mod sync;
pub mod tls;
pub mod to_device;
pub mod typing;

use std::sync::Arc;

use feathur_federation::SigningKey;

/// Everything a request handler may reach, passed as axum `State`: no globals.
pub struct Services {
    pub config: config::Config,
    pub storage: Arc<storage::Storage>,
    pub accounts: accounts::Accounts,
    pub rooms: rooms::Rooms,
    pub directory: directory::Directory,
    pub sync: sync::SyncService,
    pub push: Arc<push::Push>,
    pub typing: typing::Typing,
    pub receipts: Arc<receipts::Receipts>,
    pub presence: presence::Presence,
    pub to_device: to_device::ToDevice,
    pub e2ee: e2ee::E2ee,
    pub sending: sending::Sending,
    /// Present when `[federation] enabled`.
    pub federation: Option<Arc<federation::Federation>>,
    pub signing_key: Arc<SigningKey>,
}

pub type AppState = Arc<Services>;
