//! The JSON API (`/api/v1/...`) used by `vpn-control join` / `renew`.
//! Errors are `{"error": "..."}` with a 4xx/5xx status.

mod openapi;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::{AppError, AppResult};
use crate::ops::{self, accounts, enroll, pki};
use crate::state::AppState;
use crate::tls::ClientAddr;

/// A JSON error answer.
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0.status(),
            Json(json!({ "error": self.0.public_message() })),
        )
            .into_response()
    }
}

/// Maps axum's JSON rejections: 413 over the body limit, 415 without a
/// JSON content type, 400 for anything else (syntax, missing or mistyped
/// fields).
pub fn json_rejection(r: JsonRejection) -> AppError {
    let status = r.status();
    let text = r.body_text();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge("request body larger than 64 KiB".into())
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        AppError::UnsupportedMedia("send Content-Type: application/json".into())
    } else {
        AppError::BadRequest(format!("malformed JSON: {text}"))
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn body<T>(b: Result<Json<T>, JsonRejection>) -> AppResult<T> {
    b.map(|Json(v)| v).map_err(json_rejection)
}

/// The API routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/accounts", post(create_account))
        .route("/api/v1/enroll", post(enroll_h))
        .route("/api/v1/renew", post(renew_h))
        .route("/api/v1/groups/{group}/ca", get(ca_h))
        .route("/api/v1/groups/{group}/crl", get(crl_h))
        .route("/api/v1/openapi.json", get(openapi_h))
        .route("/api/{*rest}", axum::routing::any(api_not_found))
        .route("/healthz", get(|| async { "ok" }))
}

async fn api_not_found() -> ApiError {
    ApiError(AppError::NotFound("no such API endpoint".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountReq {
    username: String,
    password: String,
}

async fn create_account(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    b: Result<Json<AccountReq>, JsonRejection>,
) -> ApiResult<Response> {
    let req = body(b)?;
    accounts::register(&st, addr.0.ip(), &req.username, &req.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "username": req.username })),
    )
        .into_response())
}

async fn enroll_h(
    State(st): State<Arc<AppState>>,
    b: Result<Json<vpn_api::EnrollRequest>, JsonRejection>,
) -> ApiResult<Json<enroll::EnrollResponse>> {
    let req = body(b)?;
    Ok(Json(enroll::enroll(&st, &req.secret, &req.csr_pem).await?))
}

async fn renew_h(
    State(st): State<Arc<AppState>>,
    b: Result<Json<vpn_api::RenewRequest>, JsonRejection>,
) -> ApiResult<Json<enroll::EnrollResponse>> {
    let req = body(b)?;
    Ok(Json(
        enroll::renew(&st, &req.csr_pem, req.group.as_deref()).await?,
    ))
}

async fn ca_h(
    State(st): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> ApiResult<Json<vpn_api::CaAnswer>> {
    let mut conn = st.db.pool().acquire().await.map_err(AppError::from)?;
    let g = ops::group_or_404(&mut conn, &group).await?;
    Ok(Json(vpn_api::CaAnswer {
        ca_pem: g.ca_cert_pem,
    }))
}

async fn crl_h(
    State(st): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> ApiResult<Json<vpn_api::CrlAnswer>> {
    let g = pki::current_crl(&st, &group).await?;
    Ok(Json(vpn_api::CrlAnswer {
        crl_pem: g.crl_pem,
        number: u64::try_from(g.crl_number).unwrap_or_default(),
        this_update: vpn_pki::fmt_time(crate::db::from_secs(g.crl_this_update)),
        next_update: vpn_pki::fmt_time(crate::db::from_secs(g.crl_next_update)),
    }))
}

async fn openapi_h() -> Json<serde_json::Value> {
    Json(openapi::document())
}
