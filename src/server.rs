//! Start-up and shutdown of `feathur serve`: logging, storage, keys, listeners;
//! on SIGTERM/SIGINT stop accepting, finish in-flight requests, flush, exit 0.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    accounts::Accounts,
    config::{Config, LogFormat},
    directory::Directory,
    rooms::Rooms,
    server_keys,
    storage::{OpenMode, Storage},
    sync::SyncService,
    Services,
};

pub fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("feathur-worker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // ring, not aws-lc-rs: no C build. Installed explicitly because a build that
    // links both providers cannot pick a default on its own.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let storage = Storage::open(&config.database_dir(), OpenMode::ReadWrite)?;
    let signing_key = server_keys::load_or_generate(&config.signing_key_path())?;

    if config.registration_open() {
        tracing::warn!(
            "registration is open: anyone who can reach {} can create an account",
            config.client.listen
        );
    }
    if config.federation.enabled {
        tracing::warn!(
            "[federation] is enabled, but this version does not federate yet; \
             the settings are validated only"
        );
    }

    let signing_key = Arc::new(signing_key);
    let accounts = Accounts::new(storage.clone(), &config);
    let rooms = Rooms::new(
        storage.clone(),
        config.server_name.clone(),
        signing_key.clone(),
        config.default_room_version.clone(),
    )?;
    let directory = Directory::new(storage.clone(), config.server_name.clone());
    let sync = SyncService::new(storage.clone());
    sync.attach(&rooms);
    accounts.set_account_data_listener(sync.account_data_listener());
    let push = crate::push::Push::new(storage.clone());
    push.attach(&rooms);
    let typing = crate::typing::Typing::new(storage.clone());
    typing.attach(&rooms);
    let receipts = Arc::new(crate::receipts::Receipts::new(storage.clone()));
    sync.attach_ephemeral(crate::receipts::Ephemeral::new(
        typing.clone(),
        receipts.clone(),
    ));
    let presence = crate::presence::Presence::new(
        storage.clone(),
        rooms.stream().clone(),
        config.presence.enabled,
    );
    presence.start();
    sync.attach_presence(presence.clone());
    let to_device = crate::to_device::ToDevice::new(storage.clone(), rooms.stream().clone());
    sync.attach_to_device(to_device.clone());
    let e2ee = crate::e2ee::E2ee::new(
        storage.clone(),
        rooms.stream().clone(),
        config.server_name.clone(),
        to_device.clone(),
    );
    sync.attach_e2ee(e2ee.clone());
    accounts.set_device_removal_listener(Arc::new(e2ee.clone()));
    let listen = config.client.listen;
    let state = Arc::new(Services {
        config,
        storage: storage.clone(),
        accounts,
        rooms,
        directory,
        sync,
        push,
        typing,
        receipts,
        presence,
        to_device,
        e2ee,
        signing_key,
    });
    let app = crate::api::client_app(state.clone());

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} for the client API"))?;
    tracing::info!(
        server_name = %state.config.server_name,
        key_id = state.signing_key.key_id(),
        "serving the client API on http://{listen}"
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving the client API")?;

    tracing::info!("stopped accepting; flushing the database");
    drop(state);
    storage.flush()?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
