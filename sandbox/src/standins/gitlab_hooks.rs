//! GitLab stand-in: group webhooks (phase 17).

use axum::Router;

use super::gitlab::GitLabState;

#[derive(Debug, Clone, Default)]
pub struct GroupHooks {}

pub fn routes() -> Router<GitLabState> {
    Router::new()
}
