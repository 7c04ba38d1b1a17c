//! Harbor stand-in (specs/harbor/swagger.yaml). For now the health endpoints only:
//! `GET /api/v2.0/ping` answers the text "Pong" (operationId getPing) and `GET /api/v2.0/health`
//! the overall status (operationId getHealth). Phase 14 adds projects, robots and policies.

use axum::Router;
use axum::routing::get;
use serde_json::json;

pub fn routes() -> Router {
    Router::new()
        .route("/api/v2.0/ping", get(|| async { "Pong" }))
        .route(
            "/api/v2.0/health",
            get(|| async { axum::Json(json!({"status": "healthy", "components": []})) }),
        )
}
