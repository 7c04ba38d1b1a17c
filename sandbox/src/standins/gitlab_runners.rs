//! GitLab stand-in: runners created through the runner-creation API (phase 16).

use axum::Router;

use super::gitlab::GitLabState;

#[derive(Debug, Clone, Default)]
pub struct Runners {}

pub fn routes() -> Router<GitLabState> {
    Router::new()
}
