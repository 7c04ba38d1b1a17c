//! Repository files, commits and tags (GitLab docs: `api/repositories`, `api/commits`, `api/tags`).

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{GitLabClient, encode_path};
use crate::error::Result;
use crate::http::Retry;

/// Git's blob id of a file's content (SHA-1 of `blob <len>\0<content>`), as the repository
/// tree API reports it: unchanged files are recognised without downloading them.
pub fn git_blob_id(content: &str) -> String {
    let mut data = format!("blob {}\0", content.len()).into_bytes();
    data.extend_from_slice(content.as_bytes());
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One entry of `GET /projects/:id/repository/tree`.
#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    /// Git object id; for a file, compare with [`git_blob_id`].
    pub id: String,
    /// Path from the repository root.
    pub path: String,
    /// `blob` for a file, `tree` for a directory, `commit` for a submodule.
    #[serde(rename = "type")]
    pub kind: String,
}

impl GitLabClient {
    /// Every file of `reference` (`GET …/repository/tree?recursive=true`); empty for an empty
    /// repository (GitLab answers 404 "Tree Not Found").
    pub async fn repository_files(&self, project: u64, reference: &str) -> Result<Vec<TreeEntry>> {
        let path = format!(
            "projects/{project}/repository/tree?recursive=true&ref={reference}&per_page=100"
        );
        let entries: Vec<TreeEntry> = match self
            .list(&format!("listing files of project {project}"), &path)
            .await
        {
            Ok(entries) => entries,
            // An empty repository has no tree yet.
            Err(e) if e.status() == Some(404) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(entries.into_iter().filter(|e| e.kind == "blob").collect())
    }

    /// The text of one file at `reference` (`GET …/repository/files/:file_path/raw?ref=`); `None`
    /// when the file (or the branch, or any commit at all) does not exist: GitLab answers 404.
    pub async fn file_text(
        &self,
        project: u64,
        file_path: &str,
        reference: &str,
    ) -> Result<Option<String>> {
        let operation = format!("reading {file_path} of project {project}");
        let path = format!(
            "projects/{project}/repository/files/{}/raw?ref={}",
            encode_path(file_path),
            encode_path(reference)
        );
        let resp = self
            .api
            .send(&operation, Method::GET, &path, None, Retry::Safe)
            .await?;
        if resp.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(
            self.api.expect(&operation, &Method::GET, &path, resp)?.body,
        ))
    }

    /// `POST /projects/:id/repository/commits` with `actions`; returns the commit id.
    pub async fn commit(
        &self,
        project: u64,
        branch: &str,
        message: &str,
        actions: &[Value],
    ) -> Result<String> {
        let commit: Value = self
            .write(
                &format!("committing {} file change(s) to project {project}", actions.len()),
                Method::POST,
                &format!("projects/{project}/repository/commits"),
                &serde_json::json!({"branch": branch, "commit_message": message, "actions": actions}),
                Retry::Never,
            )
            .await?;
        Ok(commit["id"].as_str().unwrap_or_default().to_owned())
    }

    /// The commit a tag points at; `None` when the tag does not exist.
    pub async fn tag_target(&self, project: u64, tag: &str) -> Result<Option<String>> {
        let tag: Option<Value> = self
            .api
            .get_optional(
                &format!("reading tag {tag} of project {project}"),
                &format!("projects/{project}/repository/tags/{}", encode_path(tag)),
            )
            .await?;
        Ok(tag.and_then(|t| {
            t["commit"]["id"]
                .as_str()
                .or(t["target"].as_str())
                .map(str::to_owned)
        }))
    }

    /// `POST /projects/:id/repository/tags`.
    pub async fn create_tag(
        &self,
        project: u64,
        tag: &str,
        reference: &str,
        message: &str,
    ) -> Result<()> {
        self.api
            .call(
                &format!("creating tag {tag} in project {project}"),
                Method::POST,
                &format!("projects/{project}/repository/tags"),
                Some(&serde_json::json!({"tag_name": tag, "ref": reference, "message": message})),
                Retry::Never,
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_git_blob_ids() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_id("hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
