//! `/api/me`, the OpenAPI document and the metrics endpoint.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::{CurrentUser, Permission};
use crate::AppState;

/// `GET /api/me`: who the caller is and what they may see.
pub async fn me(user: CurrentUser) -> Json<serde_json::Value> {
    Json(json!({
        "username": user.username,
        "roles": user.roles,
        // null = every tenant
        "tenants": user.tenant_filter(),
        "owned_apps": user.owned_apps(),
        "auth": user.method,
    }))
}

/// The OpenAPI document of the JSON API, embedded in the binary.
pub const OPENAPI: &str = include_str!("../assets/openapi.json");

/// `GET /api/openapi.json`: the API's OpenAPI 3.1 document (any logged-in
/// user or token: it describes the routes, not data).
pub async fn openapi(_user: CurrentUser) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /metrics`: Prometheus text. Admin only (session or an admin's API
/// token): the counters name routes and users' activity levels.
pub async fn metrics(State(state): State<AppState>, user: CurrentUser) -> Response {
    if let Err(f) = user.require(Permission::ViewMetrics) {
        return f.into_response();
    }
    match &state.metrics {
        Some(handle) => {
            handle.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not available: another metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}
