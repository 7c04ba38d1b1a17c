//! Keycloak stand-in (specs/keycloak/openapi). For now the realm's public OIDC discovery
//! document only (`GET /realms/{realm}/.well-known/openid-configuration`); phase 12 adds the
//! admin REST endpoints (token, groups, group members).

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::json;

pub fn routes() -> Router {
    Router::new().route(
        "/realms/{realm}/.well-known/openid-configuration",
        get(|Path(realm): Path<String>, headers: HeaderMap| async move {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            let issuer = format!("http://{host}/realms/{realm}");
            axum::Json(json!({
                "issuer": issuer,
                "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
                "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
            }))
        }),
    )
}
