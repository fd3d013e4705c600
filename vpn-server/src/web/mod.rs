//! The web UI (server-rendered HTML, works without JavaScript).

use std::sync::Arc;

use axum::Router;

use crate::state::AppState;

/// The web routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
}
