//! GitLab stand-in: pipelines, deployments and commits the DORA collector heals gaps from.

use axum::Router;

use super::gitlab::GitLabState;

#[derive(Debug, Clone, Default)]
pub struct CiHistory {}

pub fn routes() -> Router<GitLabState> {
    Router::new()
}
