//! The router: JSON API, web UI, security headers, body limit.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{self, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use crate::state::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take, body upload included.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The whole application.
pub fn router(st: Arc<AppState>) -> Router {
    Router::new()
        .merge(crate::api::router())
        .merge(crate::web::router())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(deadline))
        .with_state(st)
}

/// 405 as JSON under `/api/`, as a page elsewhere.
async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    use axum::response::IntoResponse as _;
    let e = crate::error::AppError::MethodNotAllowed;
    if uri.path().starts_with("/api/") {
        crate::api::ApiError(e).into_response()
    } else {
        crate::web::WebError::from(e).into_response()
    }
}

async fn deadline(req: Request, next: Next) -> Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(res) => res,
        Err(_) => (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request took too long\n",
        )
            .into_response(),
    }
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::CACHE_CONTROL, "no-store");
    res
}
