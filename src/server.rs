//! Start-up and shutdown of `feathur serve`: logging, storage, keys, listeners;
//! on SIGTERM/SIGINT stop accepting, finish in-flight requests, flush, exit 0.

use std::{
    net::SocketAddr,
    sync::{Arc, Weak},
    time::Duration,
};

use anyhow::Context;
use axum::Router;
use ruma::EventId;
use serde_json::value::RawValue;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    accounts::Accounts,
    config::{Config, LogFormat},
    directory::Directory,
    error::Error,
    rooms::Rooms,
    sending::{PduSource, Sending, SendingConfig},
    server_keys,
    storage::{OpenMode, Storage},
    sync::SyncService,
    Services,
};

/// How long the federation listener lets open connections finish on shutdown.
/// Peers keep idle connections open; those are closed at once.
const FEDERATION_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    let push = crate::push::Push::new(storage.clone())?;
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
    let sending = Sending::new(
        storage.clone(),
        config.server_name.clone(),
        SendingConfig::with_max_backoff(config.federation.max_backoff),
    );
    let federation = if config.federation.enabled {
        rooms.set_sending(sending.clone());
        to_device.set_sending(sending.clone());
        Some(Arc::new(
            crate::federation::Federation::new(&config, &storage, signing_key.clone())
                .context("setting up the federation client")?,
        ))
    } else {
        None
    };

    // Bind every listener before serving: a taken port fails start-up at once.
    let listen = config.client.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} for the client API"))?;
    let federation_listener = if config.federation.enabled {
        Some(FederationListener::bind(&config).await?)
    } else {
        None
    };
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
        sending,
        federation,
        signing_key,
    });
    if let Some(federation) = &state.federation {
        state
            .e2ee
            .set_device_list_outbox(Arc::new(crate::federation::DeviceListShare(
                Arc::downgrade(&state),
            )));
        state
            .presence
            .set_outbox(Arc::new(crate::federation::PresenceShare(Arc::downgrade(
                &state,
            ))));
        state.sending.start(
            Arc::new(crate::federation::ClientTransport::new(
                federation.client().clone(),
            )),
            Arc::new(RoomPdus(Arc::downgrade(&state))),
        )?;
    }

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.send_replace(true);
    });
    tracing::info!(
        server_name = %state.config.server_name,
        key_id = state.signing_key.key_id(),
        "serving the client API on http://{listen}"
    );
    let client = async {
        axum::serve(
            listener,
            crate::api::client_app(state.clone())
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(until_stopped(stopped.clone()))
        .await
        .context("serving the client API")
    };
    let federation = async {
        match federation_listener {
            Some(federation) => {
                let app = crate::api::federation_app(state.clone());
                federation.serve(app, stopped.clone()).await
            }
            None => Ok(()),
        }
    };
    let served = tokio::try_join!(client, federation);
    state.sending.shutdown().await;
    served?;

    tracing::info!("stopped accepting; flushing the database");
    drop(state);
    storage.flush()?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves once `stopped` turns true (or its sender is gone).
async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

/// The Server-Server API listener: TLS with the configured or a generated
/// certificate, or plain HTTP behind a reverse proxy (`tls = false`).
struct FederationListener {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl FederationListener {
    async fn bind(config: &Config) -> anyhow::Result<FederationListener> {
        let federation = &config.federation;
        let tls = if federation.tls {
            Some(crate::tls::server_config(federation, &config.server_name)?)
        } else {
            None
        };
        if federation.tls && federation.tls_cert.is_none() {
            tracing::warn!(
                "the federation listener uses a generated self-signed certificate: \
                 only servers that skip certificate verification can connect"
            );
        }
        let listen = federation.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} for federation"))?;
        Ok(FederationListener { listener, tls })
    }

    /// Serves `app` until `stopped`, then lets open requests finish.
    async fn serve(self, app: Router, stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
        let addr = self.listener.local_addr()?;
        let make_service = app.into_make_service_with_connect_info::<SocketAddr>();
        let Some(tls) = self.tls else {
            tracing::info!("serving the Server-Server API on http://{addr} (TLS by a proxy)");
            return axum::serve(self.listener, make_service)
                .with_graceful_shutdown(until_stopped(stopped))
                .await
                .context("serving the Server-Server API");
        };
        let handle = axum_server::Handle::<SocketAddr>::new();
        tokio::spawn({
            let handle = handle.clone();
            async move {
                until_stopped(stopped).await;
                handle.graceful_shutdown(Some(FEDERATION_SHUTDOWN_GRACE));
            }
        });
        tracing::info!("serving the Server-Server API on https://{addr}");
        let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        axum_server::tls_rustls::from_tcp_rustls(self.listener.into_std()?, config)?
            .handle(handle)
            .serve(make_service)
            .await
            .context("serving the Server-Server API")
    }
}

/// Lets the federation sender read PDUs through the rooms domain. Weak, as
/// `Services` owns the sender; the sender is shut down before `Services` goes.
struct RoomPdus(Weak<Services>);

impl PduSource for RoomPdus {
    fn pdu_json(&self, event_id: &EventId) -> crate::error::Result<Option<Box<RawValue>>> {
        // An error, not "no such event": that would drop the queued PDU.
        let services = self
            .0
            .upgrade()
            .ok_or_else(|| Error::internal("the server is shutting down"))?;
        let Some(pdu) = services.rooms.get_pdu(event_id)? else {
            return Ok(None);
        };
        serde_json::value::to_raw_value(&*pdu.json)
            .map(Some)
            .map_err(|e| Error::internal(format!("encoding PDU {event_id}: {e}")))
    }
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
