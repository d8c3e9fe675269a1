//! Typed configuration: a TOML file plus `FEATHUR_<KEY>` / `FEATHUR_<SECTION>__<KEY>`
//! environment overrides. Every key and its default is documented in
//! `config/feathur.example.toml` and `docs/configuration.md`.
//!
//! Unknown keys and wrong types stop start-up: a typo in an operator's file must
//! never be silently ignored.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use ruma::{OwnedServerName, RoomVersionId};
use serde::{Deserialize, Serialize};

/// Room versions this server creates rooms in.
pub const CREATABLE_ROOM_VERSIONS: &[RoomVersionId] =
    &[RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// The file used when `--config` is not given and it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "feathur.toml";

/// Top-level keys; environment variables whose first part is not one of these are
/// not ours (e.g. `FEATHUR_BIN`) and are ignored rather than rejected.
const TOP_LEVEL_KEYS: &[&str] = &[
    "server_name",
    "data_dir",
    "default_room_version",
    "client",
    "registration",
    "federation",
    "well_known",
    "log",
    "presence",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name in every user id (`@alice:SERVER_NAME`); cannot change once users exist.
    pub server_name: OwnedServerName,
    /// Where the database, the signing key and media live.
    pub data_dir: PathBuf,
    /// Version of rooms created without an explicit `room_version`.
    pub default_room_version: RoomVersionId,
    pub client: ClientConfig,
    pub registration: RegistrationConfig,
    pub federation: FederationConfig,
    pub well_known: WellKnownConfig,
    pub log: LogConfig,
    pub presence: PresenceConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Address of the plain-HTTP Client-Server API listener (put TLS in a reverse proxy).
    pub listen: SocketAddr,
    /// Requests with a larger body are refused with 413 `M_TOO_LARGE`.
    pub max_request_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Allow `m.login.dummy` registration. Unset: open only while the client
    /// listener binds a loopback address.
    pub open: Option<bool>,
    /// Registration tokens that never run out (`m.login.registration_token`).
    pub tokens: Vec<String>,
    /// Secret for shared-secret registration by administrators' tools.
    pub shared_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    pub enabled: bool,
    /// Address of the federation listener (Server-Server API).
    pub listen: SocketAddr,
    /// Serve TLS on `listen`. Off: plain HTTP for a reverse proxy on the
    /// same machine that terminates TLS for other servers.
    pub tls: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Generate a development certificate when no certificate is given.
    pub self_signed: bool,
    /// Check peers' certificates (turn off only on test networks).
    pub verify_certificates: bool,
    /// Allow outbound requests to private and loopback address ranges.
    pub allow_private_ranges: bool,
    /// Server signing key file; default `<data_dir>/signing.key`, generated on first start.
    pub signing_key: Option<PathBuf>,
    /// Longest wait between delivery attempts to an unreachable server (the
    /// wait doubles after each failure up to this), e.g. `"1h"`, `"30m"`.
    #[serde(with = "duration_text")]
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WellKnownConfig {
    /// Served as `m.homeserver.base_url` at `/.well-known/matrix/client`.
    pub client: Option<String>,
    /// Served as `m.server` at `/.well-known/matrix/server` (`host[:port]`).
    pub server: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `feathur=debug,tower_http=warn`, …
    pub level: String,
    pub format: LogFormat,
}

/// `[presence]` (Client-Server API module "Presence"; `crate::presence`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Track and deliver presence. Off: `PUT` is accepted and ignored, `GET`
    /// answers `offline`, `/sync` carries no presence events.
    pub enabled: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig { enabled: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost:8008"
                .try_into()
                .expect("valid built-in server name"),
            data_dir: PathBuf::from("./feathur-data"),
            default_room_version: RoomVersionId::V12,
            client: ClientConfig::default(),
            registration: RegistrationConfig::default(),
            federation: FederationConfig::default(),
            well_known: WellKnownConfig::default(),
            log: LogConfig::default(),
            presence: PresenceConfig::default(),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            max_request_bytes: 50 * 1024 * 1024,
        }
    }
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 8448)),
            tls_cert: None,
            tls_key: None,
            tls: true,
            self_signed: false,
            verify_certificates: true,
            allow_private_ranges: false,
            signing_key: None,
            max_backoff: Duration::from_secs(3600),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path` (or `./feathur.toml` when present, else the built-in defaults),
    /// then applies environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Missing(path.to_owned()));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => {
                if Path::new(DEFAULT_CONFIG_FILE).exists() {
                    figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
                }
            }
        }
        figment = figment.merge(environment());
        let config: Config = figment.extract().map_err(|errors| {
            let messages: Vec<String> = errors.into_iter().map(describe_error).collect();
            ConfigError::Invalid(messages.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !CREATABLE_ROOM_VERSIONS.contains(&self.default_room_version) {
            return Err(ConfigError::Invalid(format!(
                "default_room_version {} is not one this server creates (10, 11, 12)",
                self.default_room_version
            )));
        }
        if self.client.max_request_bytes < 1024 {
            return invalid("client.max_request_bytes must be at least 1024");
        }
        if self.log.level.trim().is_empty() {
            return invalid("log.level must not be empty");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::Invalid(format!(
                "log.level is not a valid filter: {e}"
            )));
        }
        if self
            .registration
            .tokens
            .iter()
            .any(|t| !is_valid_registration_token(t))
        {
            return invalid(
                "registration.tokens: each token must be 1-64 characters of [A-Za-z0-9._~-]",
            );
        }
        if matches!(&self.registration.shared_secret, Some(s) if s.len() < 16) {
            return invalid("registration.shared_secret must be at least 16 characters");
        }
        if let Some(url) = &self.well_known.client {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return invalid("well_known.client must be an http(s) URL");
            }
        }
        let fed = &self.federation;
        if fed.tls_cert.is_some() != fed.tls_key.is_some() {
            return invalid("federation.tls_cert and federation.tls_key must be given together");
        }
        if fed.enabled && fed.tls && fed.tls_cert.is_none() && !fed.self_signed {
            return invalid(
                "federation.enabled needs federation.tls_cert and tls_key, or self_signed = true \
                 (or tls = false behind a reverse proxy that terminates TLS)",
            );
        }
        if fed.enabled && fed.listen == self.client.listen {
            return invalid("federation.listen must differ from client.listen");
        }
        if fed.max_backoff < Duration::from_secs(1) {
            return invalid("federation.max_backoff must be at least 1s");
        }
        Ok(())
    }

    /// Whether `m.login.dummy` registration is allowed: the configured value, or by
    /// default only while the client API is reachable from this machine alone.
    pub fn registration_open(&self) -> bool {
        self.registration
            .open
            .unwrap_or_else(|| self.client.listen.ip().is_loopback())
    }

    pub fn database_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.federation
            .signing_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing.key"))
    }

    /// The effective configuration as TOML with secrets replaced by `"<masked>"`.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        const MASK: &str = "<masked>";
        masked.registration.tokens = masked
            .registration
            .tokens
            .iter()
            .map(|_| MASK.into())
            .collect();
        if masked.registration.shared_secret.is_some() {
            masked.registration.shared_secret = Some(MASK.into());
        }
        let mut out = String::new();
        if self.registration.open.is_none() {
            out.push_str(&format!(
                "# registration.open is unset: effectively {}\n",
                self.registration_open()
            ));
        }
        match toml::to_string_pretty(&masked) {
            Ok(text) => out.push_str(&text),
            Err(e) => out.push_str(&format!("# could not render configuration: {e}\n")),
        }
        out
    }
}

/// `FEATHUR_CLIENT__LISTEN=…` → `client.listen`; only our own top-level keys.
fn environment() -> Env {
    Env::prefixed("FEATHUR_").split("__").filter(|key| {
        let first = key
            .as_str()
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        TOP_LEVEL_KEYS.contains(&first.as_str())
    })
}

/// A figment error as one line naming the key, what was found and what was expected.
fn describe_error(error: figment::Error) -> String {
    let key = error.path.join(".");
    let source = error
        .metadata
        .as_ref()
        .map(|m| m.name.to_string())
        .unwrap_or_default();
    let mut message = error.kind.to_string();
    if !key.is_empty() {
        message = format!("key `{key}`: {message}");
    }
    if !source.is_empty() {
        message.push_str(&format!(" (from {source})"));
    }
    message
}

/// Durations written as text (`"90s"`, `"1h 30m"`), via humantime.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a duration like \"30m\": {e}"))
        })
    }
}

/// The spec's grammar for registration tokens: `[A-Za-z0-9._~-]{1,64}`.
pub fn is_valid_registration_token(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".~_-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = load_str("").unwrap();
        assert_eq!(c.server_name.as_str(), "localhost:8008");
        assert_eq!(c.client.listen.to_string(), "127.0.0.1:8008");
        assert!(c.registration_open());
        assert!(!c.federation.enabled);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str("[client]\nlistne = \"127.0.0.1:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load_str("[client]\nmax_request_bytes = \"big\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("client.max_request_bytes"), "{err}");
    }

    #[test]
    fn registration_closed_by_default_off_loopback() {
        let c = load_str("[client]\nlisten = \"0.0.0.0:8008\"\n").unwrap();
        assert!(!c.registration_open());
    }

    #[test]
    fn secrets_are_masked() {
        let c = load_str(
            "[registration]\ntokens = [\"tok1\"]\nshared_secret = \"0123456789abcdefXYZ\"\n",
        )
        .unwrap();
        let text = c.to_masked_toml();
        assert!(
            !text.contains("tok1") && !text.contains("0123456789abcdefXYZ"),
            "{text}"
        );
        assert!(text.contains("<masked>"));
    }

    #[test]
    fn default_room_version_must_be_creatable() {
        assert_eq!(
            load_str("").unwrap().default_room_version,
            RoomVersionId::V12
        );
        assert_eq!(
            load_str("default_room_version = \"10\"\n")
                .unwrap()
                .default_room_version,
            RoomVersionId::V10
        );
        let err = load_str("default_room_version = \"1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("default_room_version"), "{err}");
    }

    #[test]
    fn federation_without_certificate_is_refused() {
        assert!(load_str("[federation]\nenabled = true\n").is_err());
        assert!(load_str("[federation]\nenabled = true\nself_signed = true\n").is_ok());
        // Behind a TLS-terminating proxy no certificate is needed.
        assert!(load_str("[federation]\nenabled = true\ntls = false\n").is_ok());
    }

    #[test]
    fn federation_listeners_and_back_off_are_checked() {
        let same = "[client]\nlisten = \"127.0.0.1:9000\"\n\
                    [federation]\nenabled = true\ntls = false\nlisten = \"127.0.0.1:9000\"\n";
        assert!(load_str(same).is_err());
        let c = load_str("[federation]\nmax_backoff = \"30m\"\n").unwrap();
        assert_eq!(c.federation.max_backoff, Duration::from_secs(1800));
        assert_eq!(
            load_str("").unwrap().federation.max_backoff,
            Duration::from_secs(3600)
        );
        let err = load_str("[federation]\nmax_backoff = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_backoff"), "{err}");
        assert!(load_str("[federation]\nmax_backoff = \"10ms\"\n").is_err());
        // The effective configuration renders and reloads.
        assert!(c.to_masked_toml().contains("max_backoff = \"30m\""));
    }

    #[test]
    fn token_grammar() {
        assert!(is_valid_registration_token("abc-DEF_1.2~"));
        assert!(!is_valid_registration_token(""));
        assert!(!is_valid_registration_token("has space"));
    }
}
