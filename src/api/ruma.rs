//! The bridge between axum and ruma's endpoint types: one extractor that reads the
//! body (within `max_request_bytes`), authenticates per the endpoint's declared
//! scheme and parses the request; one response wrapper; one way to mount a handler
//! on every path ruma knows for its endpoint.

use std::{future::Future, net::SocketAddr};

use axum::{
    body::Body,
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, MatchedPath, RawPathParams, RawQuery, State,
    },
    http::{header, Method, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{on, MethodFilter},
    Router,
};
use bytes::BytesMut;
use ruma::api::{
    auth_scheme::{
        extract_bearer_or_query_token, AccessToken, AccessTokenOptional, AppserviceToken,
        AppserviceTokenOptional, ExtractTokenError, NoAccessToken, NoAuthentication,
    },
    error::{DeserializationError, ErrorKind, FromHttpRequestError},
    federation::authentication::ServerSignatures,
    path_builder::PathBuilder,
    IncomingRequest, IncomingRequestExt, Metadata, OutgoingResponse, OutgoingResponseExt,
};

use crate::{accounts::Session, error::Error, AppState};

/// How an endpoint wants its caller identified, derived from ruma's `AuthScheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Optional,
    Required,
    /// Server-Server API: an `X-Matrix` signature from another server.
    Server,
}

/// Maps each of ruma's authentication schemes to what the server must check.
pub trait ClientAuth {
    const MODE: AuthMode;
}
impl ClientAuth for NoAuthentication {
    const MODE: AuthMode = AuthMode::None;
}
impl ClientAuth for NoAccessToken {
    const MODE: AuthMode = AuthMode::None;
}
impl ClientAuth for ServerSignatures {
    const MODE: AuthMode = AuthMode::Server;
}
impl ClientAuth for AccessToken {
    const MODE: AuthMode = AuthMode::Required;
}
impl ClientAuth for AccessTokenOptional {
    const MODE: AuthMode = AuthMode::Optional;
}
// Application services arrive with the Application Service API issue; until then
// their tokens are checked like users' and unknown ones are refused.
impl ClientAuth for AppserviceToken {
    const MODE: AuthMode = AuthMode::Required;
}
impl ClientAuth for AppserviceTokenOptional {
    const MODE: AuthMode = AuthMode::Optional;
}

/// A parsed, authenticated request for endpoint `T`.
pub struct Ruma<T> {
    pub body: T,
    /// The caller, when the endpoint takes an access token and one was given.
    pub session: Option<Session>,
    /// The calling server, for Server-Server API endpoints (its `X-Matrix`
    /// signature was verified).
    pub origin: Option<ruma::OwnedServerName>,
    pub client_ip: Option<std::net::IpAddr>,
}

impl<T> Ruma<T> {
    /// The authenticated calling server of a Server-Server API endpoint.
    pub fn origin(&self) -> Result<&ruma::ServerName, Error> {
        self.origin.as_deref().ok_or_else(|| {
            Error::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::Unauthorized,
                "Missing X-Matrix authorization",
            )
        })
    }

    /// The caller of an endpoint whose scheme requires a token.
    pub fn session(&self) -> Result<&Session, Error> {
        self.session.as_ref().ok_or_else(|| {
            Error::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::MissingToken,
                "Missing access token",
            )
        })
    }
}

impl<T> FromRequest<AppState> for Ruma<T>
where
    T: IncomingRequest + Send,
    T::Authentication: ClientAuth,
{
    type Rejection = Error;

    async fn from_request(request: Request<Body>, state: &AppState) -> Result<Self, Error> {
        let limit = state.config.client.max_request_bytes;
        let (mut parts, body) = request.into_parts();
        let declared_len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_len.is_some_and(|len| len > limit) {
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
            .await
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                {
                    too_large(limit)
                } else {
                    Error::bad_json(format!("Could not read the request body: {e}"))
                }
            })?;

        let path_params = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| Error::invalid_param(format!("Invalid path: {e}")))?;
        let mut path_args: Vec<String> = path_params.iter().map(|(_, v)| v.to_owned()).collect();
        let matched = parts
            .extensions
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned());
        if matched.is_some_and(|m| {
            m.ends_with("/state/{event_type}") || m.ends_with("/state/{event_type}/")
        }) {
            path_args.push(String::new());
        }
        let path_args: Vec<&str> = path_args.iter().map(String::as_str).collect();

        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        // Clients often send no body at all where every field is optional
        // (`POST /join`, `/leave`, …); an empty body means `{}` there, as on
        // other homeservers. Endpoints with required fields still say
        // M_BAD_JSON when ruma finds them missing.
        let body: &[u8] = if bytes.is_empty() && !matches!(parts.method, Method::GET | Method::HEAD)
        {
            b"{}"
        } else {
            &bytes
        };
        let http_request = Request::from_parts(parts, body);
        // Who is asking comes first: an unauthenticated caller learns nothing else.
        let (session, origin) = if <T::Authentication as ClientAuth>::MODE == AuthMode::Server {
            // The signature covers the body exactly as sent.
            let signed = clone_with_body(&http_request, &bytes);
            (None, Some(authenticate_server(state, &signed).await?))
        } else {
            (authenticate::<T>(state, &http_request).await?, None)
        };
        if !bytes.is_empty() {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                return Err(Error::not_json(format!(
                    "The request body is not JSON: {e}"
                )));
            }
        }
        // Some of ruma's hand-written deserializers panic on malformed input
        // (`POST /login` with `{}` indexes a missing `type`); a client's
        // mistake must be a 400, never a 500.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            T::try_from_http_request(http_request, &path_args)
        }));
        let body = match parsed {
            Ok(result) => result.map_err(parse_error)?,
            Err(_) => {
                return Err(Error::bad_json(
                    "The request body does not have the expected shape",
                ))
            }
        };
        Ok(Ruma {
            body,
            session,
            origin,
            client_ip,
        })
    }
}

async fn authenticate<T>(
    state: &AppState,
    request: &Request<&[u8]>,
) -> Result<Option<Session>, Error>
where
    T: Metadata,
    T::Authentication: ClientAuth,
{
    let mode = <T::Authentication as ClientAuth>::MODE;
    if mode == AuthMode::None {
        return Ok(None);
    }
    let token = match extract_bearer_or_query_token(request) {
        Ok(token) => token,
        Err(ExtractTokenError::InvalidAuthorizationScheme) => None,
        Err(e) => return Err(Error::invalid_param(format!("Invalid access token: {e}"))),
    };
    let Some(token) = token else {
        return match mode {
            AuthMode::Required => Err(Error::new(
                StatusCode::UNAUTHORIZED,
                ErrorKind::MissingToken,
                "Missing access token",
            )),
            _ => Ok(None),
        };
    };
    match state.accounts.session_for_token(&token)? {
        Some(session) => Ok(Some(session)),
        None => Err(Error::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::UnknownToken(Default::default()),
            "Unknown access token",
        )),
    }
}

/// The same request head over another body.
fn clone_with_body<'a>(request: &Request<&[u8]>, body: &'a [u8]) -> Request<&'a [u8]> {
    let mut out = Request::new(body);
    *out.method_mut() = request.method().clone();
    *out.uri_mut() = request.uri().clone();
    *out.headers_mut() = request.headers().clone();
    out
}

/// Verifies another server's `X-Matrix` signature; 401 `M_UNAUTHORIZED` if
/// it is missing or wrong. A server that reaches us is reachable, so its
/// delivery back-off ends.
async fn authenticate_server(
    state: &AppState,
    request: &Request<&[u8]>,
) -> Result<ruma::OwnedServerName, Error> {
    let Some(federation) = state.federation.as_ref() else {
        return Err(Error::unrecognized(
            "Federation is not enabled on this server",
        ));
    };
    let origin = federation.authenticate(request).await?;
    state.sending.retry_now(&origin);
    Ok(origin)
}

fn too_large(limit: u64) -> Error {
    Error::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooLarge,
        format!("The request body is larger than {limit} bytes"),
    )
}

/// ruma's parse failures in the spec's terms: a body of the wrong shape is
/// `M_BAD_JSON`; a bad query or path value is `M_INVALID_PARAM`.
fn parse_error(error: FromHttpRequestError) -> Error {
    match error {
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
            if e.is_eof() || e.is_syntax() {
                Error::not_json(format!("The request body is not JSON: {e}"))
            } else {
                Error::bad_json(format!("Invalid request body: {e}"))
            }
        }
        FromHttpRequestError::Deserialization(DeserializationError::Query(e)) => {
            Error::invalid_param(format!("Invalid query parameter: {e}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => {
            Error::invalid_param(format!("Invalid identifier: {e}"))
        }
        FromHttpRequestError::Deserialization(e) => {
            Error::bad_json(format!("Invalid request: {e}"))
        }
        other => Error::unrecognized(format!("Unrecognized request: {other}")),
    }
}

/// A ruma response rendered as HTTP.
pub struct RumaResponse<R>(pub R);

impl<R: OutgoingResponse> IntoResponse for RumaResponse<R> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response
                .map(|body| Body::from(body.freeze()))
                .into_response(),
            Err(e) => Error::internal(format!("could not serialize response: {e}")).into_response(),
        }
    }
}

/// Mounts handlers written as `async fn(State<AppState>, Ruma<Req>) -> Result<Resp>`
/// on all of the endpoint's paths, under the endpoint's method.
pub trait RumaRouter {
    fn ruma<T, H>(self, handler: H) -> Self
    where
        H: RumaHandler<T>;

    /// [`ruma`](RumaRouter::ruma) for a handler that also reads the raw
    /// query string (parameters ruma's request type does not know, such as
    /// unstable MSC names) and renders its own response:
    /// `async fn(State<AppState>, RawQuery, Ruma<Req>) -> Result<impl IntoResponse>`.
    fn ruma_with_query<T, H, Fut, R>(self, handler: H) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        H: Fn(State<AppState>, RawQuery, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
        R: IntoResponse + 'static;
}

impl RumaRouter for Router<AppState> {
    fn ruma<T, H>(self, handler: H) -> Self
    where
        H: RumaHandler<T>,
    {
        handler.mount(self)
    }

    fn ruma_with_query<T, H, Fut, R>(self, handler: H) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: ClientAuth,
        H: Fn(State<AppState>, RawQuery, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Error>> + Send + 'static,
        R: IntoResponse + 'static,
    {
        let Ok(filter) = MethodFilter::try_from(T::METHOD) else {
            return self;
        };
        endpoint_paths::<T>()
            .into_iter()
            .fold(self, |router, path| {
                router.route(&path, on(filter, handler.clone()))
            })
    }
}

/// Every path ruma knows for the endpoint, plus the spec's `/state/{type}`
/// and `/state/{type}/` forms of an empty state key (see `Ruma::from_request`).
fn endpoint_paths<T: Metadata>() -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for path in T::PATH_BUILDER.all_paths() {
        paths.push(path.to_owned());
        if let Some(prefix) = path.strip_suffix("/{state_key}") {
            paths.push(prefix.to_owned());
            paths.push(format!("{prefix}/"));
        }
    }
    paths
}

pub trait RumaHandler<T> {
    fn mount(self, router: Router<AppState>) -> Router<AppState>;
}

impl<T, F, Fut> RumaHandler<T> for F
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: ClientAuth,
    T::OutgoingResponse: Send,
    F: Fn(State<AppState>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse, Error>> + Send + 'static,
{
    fn mount(self, router: Router<AppState>) -> Router<AppState> {
        let filter = match MethodFilter::try_from(T::METHOD) {
            Ok(filter) => filter,
            Err(_) => return router,
        };
        endpoint_paths::<T>()
            .into_iter()
            .fold(router, |router, path| {
                let handler = self.clone();
                router.route(
                    &path,
                    on(
                        filter,
                        move |state: State<AppState>, request: Ruma<T>| async move {
                            handler(state, request).await.map(RumaResponse)
                        },
                    ),
                )
            })
    }
}
