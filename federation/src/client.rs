//! The federation HTTP client: sends ruma federation requests to other
//! servers over HTTPS (Server-Server API, "API standards", "TLS", "Request
//! Authentication") and returns ruma's typed responses.
//!
//! For each request it resolves the destination ([`crate::discovery`]),
//! refuses non-global addresses unless allowed ([`crate::net`]), signs with
//! `X-Matrix` when the endpoint requires it, sets `Host` as discovery says,
//! and reads the response body only up to a size limit.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ruma::api::auth_scheme::{AuthScheme, NoAuthentication};
use ruma::api::error::{DeserializationError, FromHttpResponseError, IntoHttpError};
use ruma::api::federation::authentication::ServerSignatures;
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt as _, Metadata, OutgoingBody as _, OutgoingRequest};
use ruma::{OwnedServerName, ServerName};

use crate::discovery::{DiscoveryError, Host, Resolver, WellKnownFetcher, WellKnownResponse};
use crate::dns::{BoxError, BoxFuture, Dns, SystemDns};
use crate::xmatrix::{self, XMatrixError};
use crate::SigningKey;

/// Settings of a [`FederationClient`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Our server name: the `origin` of signed requests.
    pub server_name: OwnedServerName,
    /// Check peers' certificates against the system roots (and
    /// `extra_root_certificates`). Off only on test networks: any
    /// certificate is then accepted.
    pub verify_certificates: bool,
    /// Allow connections to private, loopback, link-local and other
    /// non-global addresses. Off by default: see [`crate::net`].
    pub allow_private_ranges: bool,
    /// DER certificates trusted in addition to the system roots.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Limit on establishing a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Limit on a whole request, from connecting to the last body byte.
    pub request_timeout: Duration,
    /// Responses larger than this are abandoned ([`ClientError::TooLarge`]).
    pub max_response_bytes: usize,
    /// Limit on a whole `.well-known/matrix/server` fetch.
    pub well_known_timeout: Duration,
}

impl ClientConfig {
    /// Safe defaults for `server_name`: certificates verified, only global
    /// addresses, 10 s to connect, 60 s per request, 64 MiB responses.
    pub fn new(server_name: OwnedServerName) -> ClientConfig {
        ClientConfig {
            server_name,
            verify_certificates: true,
            allow_private_ranges: false,
            extra_root_certificates: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_response_bytes: 64 * 1024 * 1024,
            well_known_timeout: Duration::from_secs(10),
        }
    }
}

/// The largest `.well-known/matrix/server` document read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;
/// Redirects followed for `.well-known` ("30x redirects should be followed,
/// however redirection loops should be avoided").
const MAX_WELL_KNOWN_REDIRECTS: usize = 10;

/// Failure of a federation request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The destination could not be resolved.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The destination resolved only to addresses we may not connect to.
    #[error("refused to connect: {0}")]
    Refused(String),
    /// The HTTP client could not be set up (bad root certificate, TLS).
    #[error("could not build the HTTP client: {0}")]
    Setup(String),
    /// ruma could not build the HTTP request.
    #[error("could not build request: {0}")]
    IntoHttp(#[from] IntoHttpError),
    /// The request could not be signed.
    #[error(transparent)]
    Sign(#[from] XMatrixError),
    /// Connecting, TLS, sending or receiving failed, or timed out.
    #[error("HTTP error: {0}")]
    Http(reqwest::Error),
    /// The response body exceeded the size limit (in bytes).
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The server answered with an error (status ≥ 400); carries the
    /// status and the Matrix `errcode` if the body had one.
    #[error("server returned an error: {0}")]
    Server(ruma::api::error::Error),
    /// A successful response did not have the endpoint's shape.
    #[error("invalid response: {0}")]
    Deserialization(DeserializationError),
}

impl From<reqwest::Error> for ClientError {
    /// SSRF refusals happen inside the DNS resolver; surface them as such.
    fn from(error: reqwest::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = source {
            if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
                return ClientError::Refused(refused.0.clone());
            }
            source = e.source();
        }
        ClientError::Http(error)
    }
}

/// How a federation endpoint authenticates: signed with `X-Matrix`, or not
/// at all (the key endpoints). Implemented for the two schemes ruma's
/// federation endpoints use.
pub trait FederationAuth: AuthScheme {
    /// Whether requests carry an `X-Matrix` signature.
    const SIGNED: bool;
}

impl FederationAuth for ServerSignatures {
    const SIGNED: bool = true;
}

impl FederationAuth for NoAuthentication {
    const SIGNED: bool = false;
}

/// Sends federation requests. Cheap to share behind an `Arc`; connections
/// are pooled per destination.
pub struct FederationClient {
    config: ClientConfig,
    key: Arc<SigningKey>,
    http: reqwest::Client,
    resolver: Resolver,
    srv_targets: Arc<RwLock<HashMap<String, String>>>,
}

impl FederationClient {
    /// A client resolving names with the system's DNS configuration.
    /// Needs a Tokio runtime.
    pub fn new(config: ClientConfig, key: Arc<SigningKey>) -> Result<Self, ClientError> {
        let dns = SystemDns::from_system_conf().map_err(|e| ClientError::Setup(e.to_string()))?;
        Self::with_dns(config, key, Arc::new(dns))
    }

    /// A client resolving names with `dns` (tests inject fakes here).
    pub fn with_dns(
        config: ClientConfig,
        key: Arc<SigningKey>,
        dns: Arc<dyn Dns>,
    ) -> Result<Self, ClientError> {
        // reqwest is built without a default crypto provider (no aws-lc-rs);
        // if the process has none installed yet, use ring. (Deprecated only
        // for lacking post-quantum key exchange; aws-lc-rs is a C build.)
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let srv_targets = Arc::new(RwLock::new(HashMap::new()));
        let http = builder(&config, dns.clone(), Some(srv_targets.clone()))?
            .timeout(config.request_timeout)
            // HTTP/1.1: the spec's `Host` (e.g. a name without the 8448 or
            // SRV port) may differ from the URL's authority, which HTTP/2
            // forbids (RFC 9113 §8.3.1).
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let well_known = Arc::new(HttpWellKnown::new(&config, dns.clone())?);
        Ok(FederationClient {
            config,
            key,
            http,
            resolver: Resolver::new(dns, well_known),
            srv_targets,
        })
    }

    /// Our server name, the `origin` of requests.
    pub fn server_name(&self) -> &ServerName {
        &self.config.server_name
    }

    /// Sends `request` to `destination` and returns its typed response,
    /// reading at most [`ClientConfig::max_response_bytes`].
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest<EndpointError = ruma::api::error::Error>
            + Metadata<PathBuilder = SinglePath>,
        R::Authentication: FederationAuth,
    {
        self.send_with_limit(destination, request, self.config.max_response_bytes)
            .await
    }

    /// [`send`](Self::send) with another response size limit, e.g. larger
    /// for `send_join` of a big room.
    pub async fn send_with_limit<R>(
        &self,
        destination: &ServerName,
        request: R,
        max_bytes: usize,
    ) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest<EndpointError = ruma::api::error::Error>
            + Metadata<PathBuilder = SinglePath>,
        R::Authentication: FederationAuth,
    {
        let target = self.resolver.resolve(destination).await?;
        match (&target.connect_host, &target.tls_name) {
            (Host::Ip(ip), _) => self.check_ip(*ip)?,
            (Host::Name(connect), Host::Name(tls)) if connect != tls => {
                // An SRV target: the URL names the certificate's host, and
                // the resolver connects to the target instead.
                self.srv_targets
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tls.clone(), connect.clone());
            }
            _ => {}
        }

        let http_request = request.try_into_http_request_inner(&target.base_url(), ())?;
        let (mut parts, body) = http_request.into_parts();
        if let Some(content_type) = body.content_type() {
            parts
                .headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(content_type);
        }
        let body: Vec<u8> = body.try_into_buf().map_err(Into::into)?;
        let mut outgoing =
            reqwest::Request::try_from(http::Request::from_parts(parts, body.clone()))?;

        if <R::Authentication as FederationAuth>::SIGNED {
            // Sign the path and query exactly as reqwest will send them.
            let url = outgoing.url();
            let uri = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            let mut signed = http::Request::builder()
                .method(outgoing.method().clone())
                .uri(uri)
                .body(body)
                .map_err(|e| ClientError::Setup(e.to_string()))?;
            let origin = &self.config.server_name;
            xmatrix::sign_request(&self.key, origin, destination, &mut signed)?;
            outgoing.headers_mut().extend(
                signed
                    .headers_mut()
                    .remove(http::header::AUTHORIZATION)
                    .map(|v| (http::header::AUTHORIZATION, v)),
            );
        }
        let host = http::HeaderValue::from_str(&target.host_header)
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        outgoing.headers_mut().insert(http::header::HOST, host);

        let response = self.http.execute(outgoing).await?;
        let mut builder = http::Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(response.headers().clone());
        }
        let body = read_limited(response, max_bytes).await?;
        let response = builder
            .body(body.as_slice())
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        R::IncomingResponse::try_from_http_response(response).map_err(|e| match e {
            FromHttpResponseError::Server(error) => ClientError::Server(error),
            FromHttpResponseError::Deserialization(error) => ClientError::Deserialization(error),
            other => ClientError::Setup(format!("unexpected response error: {other}")),
        })
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), ClientError> {
        if self.config.allow_private_ranges || crate::net::is_global(ip) {
            Ok(())
        } else {
            Err(ClientError::Refused(format!(
                "{ip} is not a global address"
            )))
        }
    }
}

/// A reqwest builder with the TLS, timeout and SSRF-guarding resolver
/// settings both of our clients share.
fn builder(
    config: &ClientConfig,
    dns: Arc<dyn Dns>,
    srv_targets: Option<Arc<RwLock<HashMap<String, String>>>>,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .no_proxy()
        .connect_timeout(config.connect_timeout)
        .user_agent(concat!("Feathur/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(GuardedResolver {
            dns,
            allow_private: config.allow_private_ranges,
            srv_targets,
        })
        .tls_danger_accept_invalid_certs(!config.verify_certificates);
    for der in &config.extra_root_certificates {
        let cert = reqwest::Certificate::from_der(der)
            .map_err(|e| ClientError::Setup(format!("extra root certificate: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}

/// Reads a body, failing as soon as it passes `limit` bytes (checked
/// against `Content-Length` first, then while streaming).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ClientError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(ClientError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ClientError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The resolver's refusal, found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RefusedAddress(String);

/// reqwest's DNS resolver: looks names up through [`Dns`] (following SRV
/// targets chosen by discovery) and drops non-global addresses unless
/// allowed, so a hostname pointing at 127.0.0.1 is refused like the
/// literal. IP-literal URLs never reach a resolver; they are checked before
/// sending.
struct GuardedResolver {
    dns: Arc<dyn Dns>,
    allow_private: bool,
    srv_targets: Option<Arc<RwLock<HashMap<String, String>>>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        let target = self
            .srv_targets
            .as_ref()
            .and_then(|t| {
                t.read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&name)
                    .cloned()
            })
            .unwrap_or_else(|| name.clone());
        let dns = self.dns.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let ips = dns.lookup_ip(&target).await?;
            let allowed: Vec<SocketAddr> = ips
                .iter()
                .filter(|ip| allow_private || crate::net::is_global(**ip))
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            if allowed.is_empty() {
                let reason = if ips.is_empty() {
                    format!("{target} has no addresses")
                } else {
                    format!("{name} resolves only to non-global addresses {ips:?}")
                };
                return Err(Box::new(RefusedAddress(reason)) as BoxError);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Redirect rule for `.well-known`: HTTPS only, no loops, at most
/// [`MAX_WELL_KNOWN_REDIRECTS`], and no hop to a non-global IP literal
/// (hostnames are checked by the resolver).
fn well_known_redirect(
    attempt: reqwest::redirect::Attempt<'_>,
    allow_private: bool,
) -> reqwest::redirect::Action {
    let url = attempt.url();
    if attempt.previous().len() >= MAX_WELL_KNOWN_REDIRECTS {
        return attempt.error("too many redirects");
    }
    if attempt.previous().contains(url) {
        return attempt.error("redirect loop");
    }
    if url.scheme() != "https" {
        return attempt.error("redirect away from https");
    }
    let host = url.host_str().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        if !allow_private && !crate::net::is_global(ip) {
            return attempt.error(RefusedAddress(format!("redirect to {ip}")));
        }
    }
    attempt.follow()
}

/// Fetches `.well-known/matrix/server` over HTTPS with the guarded client.
struct HttpWellKnown {
    http: reqwest::Client,
}

impl HttpWellKnown {
    fn new(config: &ClientConfig, dns: Arc<dyn Dns>) -> Result<Self, ClientError> {
        let allow_private = config.allow_private_ranges;
        let http = builder(config, dns, None)?
            .timeout(config.well_known_timeout)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                well_known_redirect(attempt, allow_private)
            }))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(HttpWellKnown { http })
    }

    async fn fetch_url(&self, url: &str) -> Result<WellKnownResponse, BoxError> {
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_limited(response, MAX_WELL_KNOWN_BYTES).await?;
        Ok(WellKnownResponse {
            status,
            headers,
            body,
        })
    }
}

impl WellKnownFetcher for HttpWellKnown {
    fn fetch<'a>(
        &'a self,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<WellKnownResponse, BoxError>> {
        Box::pin(async move {
            self.fetch_url(&format!("https://{hostname}/.well-known/matrix/server"))
                .await
        })
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
