//! The HTTP surface: routers per API and the middleware every request passes
//! (request logging, CORS, panic containment, Matrix-shaped 404/405).

pub mod client;
pub mod federation;
mod middleware;
pub mod ruma;

use axum::Router;

use crate::AppState;

/// The client-facing application: Client-Server API plus discovery.
pub fn client_app(state: AppState) -> Router {
    middleware::wrap(client::router(), state)
}

/// The federation listener's application: Server-Server API and keys.
pub fn federation_app(state: AppState) -> Router {
    middleware::wrap(federation::router(), state)
}
