//! Layers around every route: request logs without secrets, CORS as the spec's
//! "Web Browser Clients" section asks, panics turned into 500 `M_UNKNOWN`, and
//! the spec's `M_UNRECOGNIZED` for unknown paths (404) and wrong methods (405).

use std::{any::Any, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use ruma::api::error::ErrorKind;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};
use tracing::Span;

use crate::error::Error;

pub fn wrap<S: Clone + Send + Sync + 'static>(router: Router<S>, state: S) -> Router {
    router
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(cors))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    // The path only: query strings may carry `access_token`.
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                    )
                })
                .on_request(())
                .on_response(|response: &Response, latency: Duration, _span: &Span| {
                    tracing::info!(
                        status = response.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        "answered"
                    );
                })
                .on_failure(()),
        )
}

/// CORS as the spec's "Web Browser Clients" section gives it, on every response
/// (including errors and panics); an `OPTIONS` request to any path is answered
/// here with 200, preflight or not.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization"),
    );
    response
}

async fn unknown_endpoint() -> Error {
    Error::unrecognized("Unrecognized request")
}

async fn wrong_method() -> Error {
    Error::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Unrecognized,
        "Method not allowed",
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "a request handler panicked");
    let mut response = Error::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unknown,
        "Internal server error",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::to_bytes, routing::get};
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let router = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route("/panic", get(panicking_handler));
        wrap(router, ())
    }

    async fn panicking_handler() -> &'static str {
        panic!("handler bug")
    }

    async fn call(method: Method, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_panic_is_a_500_with_a_matrix_body() {
        let (status, headers, body) = call(Method::GET, "/panic").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("M_UNKNOWN"), "{body}");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        // and the next request is served as usual
        assert_eq!(call(Method::GET, "/ok").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_path_and_wrong_method_are_unrecognized() {
        let (status, _, body) = call(Method::GET, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("M_UNRECOGNIZED"), "{body}");
        let (status, _, body) = call(Method::DELETE, "/ok").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body.contains("M_UNRECOGNIZED"), "{body}");
    }

    #[tokio::test]
    async fn options_is_answered_with_cors_headers() {
        let (status, headers, _) = call(Method::OPTIONS, "/anything").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("Authorization"));
    }
}
