//! Server discovery: where to connect for a server name, and which `Host`
//! header and certificate name to use (Server-Server API, "Resolving server
//! names").
//!
//! The order is the spec's: an IP literal is used as is; a hostname with an
//! explicit port is used as is; otherwise `/.well-known/matrix/server` may
//! delegate to another name (itself resolved by IP literal, explicit port,
//! SRV), and failing that SRV records for the name are tried, then the name
//! itself on port 8448. SRV tries `_matrix-fed._tcp` before the deprecated
//! `_matrix._tcp`. A/AAAA resolution of the chosen host happens when the
//! client connects, so the SSRF guard sees the final addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use ruma::api::federation::discovery::discover_homeserver;
use ruma::api::IncomingResponseExt as _;
use ruma::{OwnedServerName, ServerName};

use crate::dns::{sort_srv, BoxError, BoxFuture, Dns};

/// The port a server name without one (and without SRV records) uses.
pub const DEFAULT_FEDERATION_PORT: u16 = 8448;

/// How long a `.well-known` answer is kept when it has no cache headers
/// (the spec's recommended default).
pub const WELL_KNOWN_DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a `.well-known` answer is kept, whatever its headers say
/// (the spec's recommended maximum).
pub const WELL_KNOWN_MAX_TTL: Duration = Duration::from_secs(48 * 3600);
/// The shortest a `.well-known` answer is kept, so `no-store` cannot make
/// every federation request fetch it again.
pub const WELL_KNOWN_MIN_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a first `.well-known` failure is remembered; it doubles on each
/// consecutive failure up to [`WELL_KNOWN_MAX_ERROR_TTL`] (the spec
/// recommends caching errors "for up to an hour" and backing off).
pub const WELL_KNOWN_ERROR_TTL: Duration = Duration::from_secs(5 * 60);
/// The longest a `.well-known` failure is remembered.
pub const WELL_KNOWN_MAX_ERROR_TTL: Duration = Duration::from_secs(3600);

/// Beyond this many entries, expired `.well-known` answers are dropped.
const WELL_KNOWN_CACHE_SOFT_LIMIT: usize = 10_000;

/// A host to connect to or to name in a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP address: connect to it directly; the certificate must be for
    /// this address and no SNI is sent.
    Ip(IpAddr),
    /// A hostname: resolved with AAAA/A (following CNAMEs) when connecting.
    Name(String),
}

impl Host {
    fn parse(host: &str) -> Host {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.to_owned()),
        }
    }

    /// The host as written in a URL authority (IPv6 in brackets).
    pub fn to_url_host(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

/// Where and how to send requests to a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The host to open the TCP connection to.
    pub connect_host: Host,
    /// The port to connect to.
    pub port: u16,
    /// The value of the `Host` header.
    pub host_header: String,
    /// The name the server's certificate must be valid for; also the SNI
    /// unless it is an IP address.
    pub tls_name: Host,
}

impl Destination {
    fn direct(host: Host, port: u16, host_header: &str) -> Destination {
        Destination {
            connect_host: host.clone(),
            port,
            host_header: host_header.to_owned(),
            tls_name: host,
        }
    }

    /// The URL prefix requests are made to: the certificate name and the
    /// port. When `connect_host` differs (an SRV target) the client's
    /// resolver maps the name to it.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.tls_name.to_url_host(), self.port)
    }
}

/// The raw answer to `GET https://<hostname>/.well-known/matrix/server`,
/// after following redirects.
#[derive(Clone, Debug)]
pub struct WellKnownResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (for `Cache-Control` and `Expires`).
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

/// Fetches `/.well-known/matrix/server`; a trait so tests need no network.
pub trait WellKnownFetcher: Send + Sync {
    /// Fetches `https://<hostname>/.well-known/matrix/server`. `Err` is a
    /// transport failure (no connection, TLS error, timeout, too large).
    fn fetch<'a>(&'a self, hostname: &'a str)
        -> BoxFuture<'a, Result<WellKnownResponse, BoxError>>;
}

/// A discovery step that could not be completed; the request should be
/// retried later rather than sent somewhere possibly wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// An SRV lookup failed for a reason other than "no such record".
    #[error("SRV lookup for {name} failed: {source}")]
    Srv {
        /// The SRV name queried.
        name: String,
        /// The DNS error.
        source: BoxError,
    },
}

struct CachedWellKnown {
    delegated: Option<OwnedServerName>,
    expires: Instant,
    failures: u32,
}

/// Resolves server names, caching `.well-known` answers.
pub struct Resolver {
    dns: Arc<dyn Dns>,
    well_known: Arc<dyn WellKnownFetcher>,
    cache: Mutex<HashMap<String, CachedWellKnown>>,
}

impl Resolver {
    /// A resolver using `dns` for SRV lookups and `well_known` to fetch
    /// delegation documents.
    pub fn new(dns: Arc<dyn Dns>, well_known: Arc<dyn WellKnownFetcher>) -> Resolver {
        Resolver {
            dns,
            well_known,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `server_name` following "Resolving server names" step by step.
    pub async fn resolve(&self, server_name: &ServerName) -> Result<Destination, DiscoveryError> {
        self.resolve_at(server_name, Instant::now(), SystemTime::now())
            .await
    }

    async fn resolve_at(
        &self,
        server_name: &ServerName,
        now: Instant,
        wall_clock: SystemTime,
    ) -> Result<Destination, DiscoveryError> {
        let hostname = server_name.host();
        let port = server_name.port();
        // Step 1: IP literal, Host = the server name as given.
        // Step 2: hostname with explicit port, Host = the server name.
        let host = Host::parse(hostname);
        if matches!(host, Host::Ip(_)) || port.is_some() {
            let port = port.unwrap_or(DEFAULT_FEDERATION_PORT);
            return Ok(Destination::direct(host, port, server_name.as_str()));
        }
        // Step 3: `.well-known` delegation.
        if let Some(delegated) = self.well_known(hostname, now, wall_clock).await {
            let delegated_host = Host::parse(delegated.host());
            return match (delegated_host, delegated.port()) {
                // 3.1: IP literal, Host = the IP (and port if one was given).
                (host @ Host::Ip(_), port) => Ok(Destination::direct(
                    host,
                    port.unwrap_or(DEFAULT_FEDERATION_PORT),
                    delegated.as_str(),
                )),
                // 3.2: explicit port, Host = `<delegated_hostname>:<delegated_port>`.
                (host, Some(port)) => Ok(Destination::direct(host, port, delegated.as_str())),
                // 3.3–3.5: SRV for the delegated name, then the name on 8448.
                (_, None) => self.srv_or_default(delegated.host()).await,
            };
        }
        // Steps 4–6: SRV for the name itself, then the name on 8448.
        self.srv_or_default(hostname).await
    }

    /// SRV `_matrix-fed._tcp`, then the deprecated `_matrix._tcp`, then the
    /// name itself on port 8448. The certificate and `Host` are always
    /// `hostname`: the SRV target proves itself a delegate by presenting a
    /// certificate for the name it stands in for.
    async fn srv_or_default(&self, hostname: &str) -> Result<Destination, DiscoveryError> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let name = format!("{service}.{hostname}");
            let mut records =
                self.dns
                    .lookup_srv(&name)
                    .await
                    .map_err(|source| DiscoveryError::Srv {
                        name: name.clone(),
                        source,
                    })?;
            sort_srv(&mut records);
            if let Some(record) = records.first() {
                return Ok(Destination {
                    connect_host: Host::parse(&record.target),
                    port: record.port,
                    host_header: hostname.to_owned(),
                    tls_name: Host::Name(hostname.to_owned()),
                });
            }
        }
        let host = Host::Name(hostname.to_owned());
        Ok(Destination::direct(host, DEFAULT_FEDERATION_PORT, hostname))
    }

    /// The delegated server name from `hostname`'s `.well-known`, from the
    /// cache when fresh. Any failure means "no delegation".
    async fn well_known(
        &self,
        hostname: &str,
        now: Instant,
        wall_clock: SystemTime,
    ) -> Option<OwnedServerName> {
        let previous_failures = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(hostname) {
                Some(entry) if entry.expires > now => return entry.delegated.clone(),
                Some(entry) => entry.failures,
                None => 0,
            }
        };
        let parsed = match self.well_known.fetch(hostname).await {
            Ok(response) => parse_well_known(&response, wall_clock),
            Err(e) => Err(e.to_string()),
        };
        let entry = match parsed {
            Ok((delegated, ttl)) => CachedWellKnown {
                delegated: Some(delegated),
                expires: now + ttl,
                failures: 0,
            },
            Err(reason) => {
                tracing::debug!(hostname, reason, "no usable .well-known/matrix/server");
                let failures = previous_failures.saturating_add(1);
                CachedWellKnown {
                    delegated: None,
                    expires: now + error_ttl(failures),
                    failures,
                }
            }
        };
        let delegated = entry.delegated.clone();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= WELL_KNOWN_CACHE_SOFT_LIMIT {
            cache.retain(|_, e| e.expires > now);
        }
        cache.insert(hostname.to_owned(), entry);
        delegated
    }
}

/// A valid answer is a 200 whose JSON body has an `m.server` that is a
/// server name; anything else is an error ("bad JSON, missing properties,
/// non-200 response, etc").
fn parse_well_known(
    response: &WellKnownResponse,
    wall_clock: SystemTime,
) -> Result<(OwnedServerName, Duration), String> {
    if response.status != 200 {
        return Err(format!("HTTP status {}", response.status));
    }
    let http_response = http::Response::new(response.body.as_slice());
    let parsed = discover_homeserver::Response::try_from_http_response(http_response)
        .map_err(|e| e.to_string())?;
    Ok((parsed.server, cache_ttl(&response.headers, wall_clock)))
}

/// How long to keep a successful answer: `Cache-Control: max-age`, else
/// `Expires`, else 24 h; within [`WELL_KNOWN_MIN_TTL`, `WELL_KNOWN_MAX_TTL`].
fn cache_ttl(headers: &HeaderMap, wall_clock: SystemTime) -> Duration {
    max_age(headers)
        .or_else(|| {
            let expires = headers.get(http::header::EXPIRES)?.to_str().ok()?;
            // An unparseable `Expires` (such as "0") means already expired.
            Some(match httpdate::parse_http_date(expires) {
                Ok(at) => at.duration_since(wall_clock).unwrap_or_default(),
                Err(_) => Duration::ZERO,
            })
        })
        .unwrap_or(WELL_KNOWN_DEFAULT_TTL)
        .clamp(WELL_KNOWN_MIN_TTL, WELL_KNOWN_MAX_TTL)
}

/// `max-age` from `Cache-Control`; `no-store` and `no-cache` count as zero.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim().to_ascii_lowercase();
            if name == "no-store" || name == "no-cache" {
                return Some(Duration::ZERO);
            }
            if name == "max-age" {
                if let Ok(secs) = arg.trim().trim_matches('"').parse::<u64>() {
                    age = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    age
}

/// 5 min after one failure, doubling per consecutive failure, at most 1 h.
fn error_ttl(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(10);
    (WELL_KNOWN_ERROR_TTL * factor).min(WELL_KNOWN_MAX_ERROR_TTL)
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
