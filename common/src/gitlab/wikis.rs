//! Project wiki pages (GitLab docs: `api/wikis`, "Project wikis API", Free tier; excerpt with its
//! provenance in sandbox/fixtures/gitlab-docs/wikis-api.md).
//!
//! A page is addressed by its slug, which GitLab derives from the title (the doc's example: title
//! `Hello`, slug `Hello`; a `/` makes a sub-directory page); the slug goes URL-encoded into the
//! path (`dir%2Fpage_name`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{GitLabClient, encode_path};
use crate::error::Result;
use crate::http::Retry;

/// One page as "List wiki pages" with `with_content=1` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WikiPage {
    /// The page's address in the wiki, e.g. `Home` or `troubleshooting-01-general`.
    pub slug: String,
    /// The page's title; creating a page with a title gives it the slug derived from it.
    pub title: String,
    /// `markdown`, `rdoc`, `asciidoc` or `org`.
    #[serde(default)]
    pub format: String,
    /// The page's source text (absent when listed without `with_content`).
    #[serde(default)]
    pub content: Option<String>,
}

impl GitLabClient {
    /// Every page of a project's wiki with its content: `GET /projects/:id/wikis?with_content=1`.
    pub async fn wiki_pages(&self, project: u64) -> Result<Vec<WikiPage>> {
        self.list(
            &format!("listing the wiki pages of project {project}"),
            &format!("projects/{project}/wikis?with_content=1"),
        )
        .await
    }

    /// `POST /projects/:id/wikis`; returns the page GitLab made (its `slug` derived from `title`).
    pub async fn create_wiki_page(
        &self,
        project: u64,
        title: &str,
        content: &str,
        format: &str,
    ) -> Result<WikiPage> {
        self.write(
            &format!("creating wiki page {title} of project {project}"),
            Method::POST,
            &format!("projects/{project}/wikis"),
            &json!({"title": title, "content": content, "format": format}),
            Retry::Never,
        )
        .await
    }

    /// `PUT /projects/:id/wikis/:slug` with `content`, `title` and/or `format` (at least one of
    /// `content` and `title`; a new title renames the page).
    pub async fn update_wiki_page(
        &self,
        project: u64,
        slug: &str,
        body: &Value,
    ) -> Result<WikiPage> {
        self.write(
            &format!("updating wiki page {slug} of project {project}"),
            Method::PUT,
            &format!("projects/{project}/wikis/{}", encode_path(slug)),
            body,
            Retry::Safe,
        )
        .await
    }

    /// `DELETE /projects/:id/wikis/:slug` (204 No Content). A page already gone (404, e.g. after a
    /// retried request) counts as deleted.
    pub async fn delete_wiki_page(&self, project: u64, slug: &str) -> Result<()> {
        self.api
            .delete(
                &format!("deleting wiki page {slug} of project {project}"),
                &format!("projects/{project}/wikis/{}", encode_path(slug)),
            )
            .await
    }
}
