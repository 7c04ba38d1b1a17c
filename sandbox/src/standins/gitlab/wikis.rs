//! GitLab stand-in: project wikis (phase 12b). Behaviour from GitLab's "Project wikis API"
//! (`doc/api/wikis.md`, Free tier; excerpt with provenance in
//! sandbox/fixtures/gitlab-docs/wikis-api.md):
//! - "List wiki pages": `GET /projects/:id/wikis`, `with_content` optional; each page has `format`,
//!   `slug`, `title`, `encoding` and, with `with_content`, `content`. Not paginated.
//! - "Get a wiki page": `GET /projects/:id/wikis/:slug`, the slug URL-encoded (`dir%2Fpage_name`).
//! - "Create a new wiki page": `POST /projects/:id/wikis`, `title` and `content` required, `format`
//!   `markdown` (default), `rdoc`, `asciidoc` or `org`; the slug comes from the title (the doc's
//!   example: title `Hello`, slug `Hello`; spaces become `-` here, as GitLab's wiki page URLs show
//!   them, which the doc does not state).
//! - "Edit an existing wiki page": `PUT /projects/:id/wikis/:slug`, at least one of `content` and
//!   `title` ("Yes, if `title`/`content` is not provided"), `format` optional; a new title moves
//!   the page to the slug of that title (the doc's example: PUT `…/wikis/foo` with `title=Docs`
//!   answers slug `Docs`).
//! - "Delete a wiki page": `DELETE /projects/:id/wikis/:slug`, "204 No Content" with an empty body.
//!
//! Not in the doc, so modelled as Grape and GitLab answer elsewhere and never relied on by a
//! phase: a missing page is 404 `{"message": "404 Wiki Page Not Found"}`; a missing required
//! attribute is 400 `{"error": "… is missing"}`; a title whose page exists is 400.
//!
//! Every write is also appended to [`Wikis::log`], so tests can name the pages written.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{GitLabState, Q, Reply, as_bool, bad_param, find_project_id, message, not_found};

/// The formats "Create a new wiki page" lists.
const FORMATS: &[&str] = &["markdown", "rdoc", "asciidoc", "org"];

/// One page of a project's wiki.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WikiPageRecord {
    pub title: String,
    pub format: String,
    pub content: String,
}

/// One write the wiki endpoints served: `POST`, `PUT` or `DELETE`, and the slug it addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WikiWrite {
    pub project: u64,
    pub method: &'static str,
    pub slug: String,
}

/// Every project's wiki pages (project id → slug → page), and the writes served.
#[derive(Debug, Clone, Default)]
pub struct Wikis {
    pub pages: BTreeMap<u64, BTreeMap<String, WikiPageRecord>>,
    pub log: Vec<WikiWrite>,
}

impl Wikis {
    /// The slug GitLab gives a page titled `title`.
    pub fn slug_of(title: &str) -> String {
        title.replace(' ', "-")
    }

    /// Puts a page as something other than the API would (a git push of the wiki repository, as
    /// the bash phase 12b did): not logged.
    pub fn put(&mut self, project: u64, slug: &str, content: &str) {
        self.pages.entry(project).or_default().insert(
            slug.to_owned(),
            WikiPageRecord {
                title: slug.to_owned(),
                format: "markdown".to_owned(),
                content: content.to_owned(),
            },
        );
    }

    /// The slugs of a project's wiki.
    pub fn slugs(&self, project: u64) -> Vec<String> {
        self.pages
            .get(&project)
            .map(|pages| pages.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many writes with `method` the log holds.
    pub fn count(&self, method: &str) -> usize {
        self.log.iter().filter(|w| w.method == method).count()
    }
}

fn page_json(slug: &str, page: &WikiPageRecord, with_content: bool) -> Value {
    let mut v =
        json!({"format": page.format, "slug": slug, "title": page.title, "encoding": "UTF-8"});
    if with_content {
        v["content"] = page.content.clone().into();
    }
    v
}

fn page_not_found() -> Reply {
    not_found("Wiki Page")
}

pub fn routes() -> Router<GitLabState> {
    Router::new()
        .route(
            "/api/v4/projects/{id}/wikis",
            get(list_pages).post(create_page),
        )
        .route(
            "/api/v4/projects/{id}/wikis/{slug}",
            get(get_page).put(edit_page).delete(delete_page),
        )
}

async fn list_pages(State(s): State<GitLabState>, Path(id): Path<String>, Query(q): Q) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let with_content = q
        .get("with_content")
        .is_some_and(|v| v == "1" || as_bool(&Value::String(v.clone())) == Some(true));
    let pages: Vec<Value> = data
        .wikis
        .pages
        .get(&pid)
        .into_iter()
        .flatten()
        .map(|(slug, page)| page_json(slug, page, with_content))
        .collect();
    Json(Value::Array(pages)).into_response()
}

async fn get_page(State(s): State<GitLabState>, Path((id, slug)): Path<(String, String)>) -> Reply {
    let data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    match data.wikis.pages.get(&pid).and_then(|p| p.get(&slug)) {
        Some(page) => Json(page_json(&slug, page, true)).into_response(),
        None => page_not_found(),
    }
}

fn format_of(body: &Value) -> Result<Option<String>, Reply> {
    match body.get("format") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_str().filter(|f| FORMATS.contains(f)) {
            Some(f) => Ok(Some(f.to_owned())),
            None => Err(bad_param("format does not have a valid value")),
        },
    }
}

async fn create_page(
    State(s): State<GitLabState>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let missing: Vec<&str> = ["title", "content"]
        .into_iter()
        .filter(|k| body[*k].as_str().is_none())
        .collect();
    if !missing.is_empty() {
        return bad_param(&format!("{} is missing", missing.join(", ")));
    }
    let format = match format_of(&body) {
        Ok(f) => f.unwrap_or_else(|| "markdown".to_owned()),
        Err(reply) => return reply,
    };
    let title = body["title"].as_str().unwrap_or_default().to_owned();
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let slug = Wikis::slug_of(&title);
    let pages = data.wikis.pages.entry(pid).or_default();
    if pages.contains_key(&slug) {
        return message(
            StatusCode::BAD_REQUEST,
            &format!("Duplicate page: a page titled {title} already exists"),
        );
    }
    let page = WikiPageRecord {
        title,
        format,
        content: body["content"].as_str().unwrap_or_default().to_owned(),
    };
    let reply = page_json(&slug, &page, true);
    pages.insert(slug.clone(), page);
    data.wikis.log.push(WikiWrite {
        project: pid,
        method: "POST",
        slug,
    });
    (StatusCode::CREATED, Json(reply)).into_response()
}

async fn edit_page(
    State(s): State<GitLabState>,
    Path((id, slug)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Reply {
    let content = body["content"].as_str().map(str::to_owned);
    let title = body["title"].as_str().map(str::to_owned);
    if content.is_none() && title.is_none() {
        return bad_param("content, title are missing, at least one parameter must be provided");
    }
    let format = match format_of(&body) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    let pages = data.wikis.pages.entry(pid).or_default();
    let Some(mut page) = pages.remove(&slug) else {
        return page_not_found();
    };
    if let Some(content) = content {
        page.content = content;
    }
    if let Some(format) = format {
        page.format = format;
    }
    let new_slug = match title {
        Some(title) => {
            let moved = Wikis::slug_of(&title);
            page.title = title;
            moved
        }
        None => slug.clone(),
    };
    let reply = page_json(&new_slug, &page, true);
    pages.insert(new_slug, page);
    data.wikis.log.push(WikiWrite {
        project: pid,
        method: "PUT",
        slug,
    });
    Json(reply).into_response()
}

async fn delete_page(
    State(s): State<GitLabState>,
    Path((id, slug)): Path<(String, String)>,
) -> Reply {
    let mut data = s.lock();
    let Some(pid) = find_project_id(&data, &id) else {
        return not_found("Project");
    };
    if data
        .wikis
        .pages
        .get_mut(&pid)
        .and_then(|p| p.remove(&slug))
        .is_none()
    {
        return page_not_found();
    }
    data.wikis.log.push(WikiWrite {
        project: pid,
        method: "DELETE",
        slug,
    });
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::super::serve_demo;
    use super::*;

    /// The doc's examples: create `Hello` (slug `Hello`), list with and without content, rename
    /// by `PUT` with a title, delete (204), and the 404 of a page that is gone.
    #[tokio::test]
    async fn create_list_rename_and_delete_as_the_doc_shows() {
        let (running, state) = serve_demo().await;
        let http = reqwest::Client::new();
        let base = format!(
            "{}/api/v4/projects/platform_services%2Fpacket-relay/wikis",
            running.url
        );
        let send = |req: reqwest::RequestBuilder| async move {
            let resp = req
                .header("private-token", "glpat-test")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        };
        let (status, created) = send(
            http.post(&base)
                .json(&json!({"title": "Hello", "content": "Hello world"})),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(
            created,
            json!({"content": "Hello world", "format": "markdown", "slug": "Hello", "title": "Hello", "encoding": "UTF-8"})
        );
        let (status, _) = send(
            http.post(&base)
                .json(&json!({"title": "Hello", "content": "x"})),
        )
        .await;
        assert_eq!(status, 400, "a second page with the same title");
        let (status, _) = send(http.post(&base).json(&json!({"title": "x"}))).await;
        assert_eq!(status, 400, "content is required");
        let (_, spaced) = send(
            http.post(&base)
                .json(&json!({"title": "Two words", "content": "y"})),
        )
        .await;
        assert_eq!(spaced["slug"], "Two-words");
        let (_, without_content) = send(http.get(&base)).await;
        assert!(
            without_content
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p.get("content").is_none())
        );
        let (_, full) = send(http.get(format!("{base}?with_content=1"))).await;
        assert_eq!(full[0]["content"], "Hello world");
        let (status, renamed) = send(
            http.put(format!("{base}/Hello"))
                .json(&json!({"format": "rdoc", "content": "documentation", "title": "Docs"})),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            (renamed["slug"].as_str(), renamed["format"].as_str()),
            (Some("Docs"), Some("rdoc"))
        );
        let (status, _) = send(
            http.put(format!("{base}/Docs"))
                .json(&json!({"format": "org"})),
        )
        .await;
        assert_eq!(status, 400, "content or title is required");
        let (status, body) = send(http.delete(format!("{base}/Docs"))).await;
        assert_eq!((status, body), (204, Value::Null));
        let (status, body) = send(http.get(format!("{base}/Docs"))).await;
        assert_eq!(status, 404);
        assert_eq!(body["message"], "404 Wiki Page Not Found");
        let pid = state
            .lock()
            .project_by_path("platform_services/packet-relay")
            .unwrap()
            .id;
        let d = state.lock();
        assert_eq!(d.wikis.slugs(pid), ["Two-words"]);
        assert_eq!(
            (
                d.wikis.count("POST"),
                d.wikis.count("PUT"),
                d.wikis.count("DELETE")
            ),
            (2, 1, 1)
        );
    }
}
