//! GitLab webhook bodies in the shape of GitLab's "Webhook events" documentation, for recorded
//! event streams (tests, the benchmark, the sandbox's demo traffic). Only the fields the
//! collector reads, plus the identifying ones GitLab always sends.

use serde_json::{Value, json};

use crate::timefmt::format_gitlab;

/// The `X-Gitlab-Event` header of each body.
pub const PIPELINE_HOOK: &str = "Pipeline Hook";
pub const DEPLOYMENT_HOOK: &str = "Deployment Hook";
pub const PUSH_HOOK: &str = "Push Hook";

fn project(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({"id": 1, "name": name, "path_with_namespace": path,
           "web_url": format!("https://gitlab.example.com/{path}")})
}

/// RFC 3339 (`commits[].timestamp`, `commit.timestamp`).
fn rfc3339(unix: i64) -> String {
    let t = format_gitlab(unix);
    format!("{}T{}+00:00", &t[..10], &t[11..19])
}

/// A deployment event (`status_changed_at` in GitLab's `YYYY-MM-DD HH:MM:SS +0000` form).
pub fn deployment(
    path: &str,
    id: u64,
    environment: &str,
    status: &str,
    sha: &str,
    at: i64,
) -> Value {
    let when = format_gitlab(at).replace(" UTC", " +0000");
    json!({
        "object_kind": "deployment",
        "status": status,
        "status_changed_at": when,
        "deployment_id": id,
        "deployable_id": id + 1000,
        "environment": environment,
        "environment_tier": environment,
        "project": project(path),
        "short_sha": sha.get(..8).unwrap_or(sha),
        "commit_url": format!("https://gitlab.example.com/{path}/-/commit/{sha}"),
        "ref": "main",
    })
}

/// A job of a pipeline event.
pub struct Build<'a> {
    pub stage: &'a str,
    pub started: i64,
    pub finished: i64,
    pub queued: f64,
    pub runner_tags: &'a [&'a str],
}

/// When a pipeline's commit was made, and when the pipeline was created and finished (Unix
/// seconds).
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub committed: i64,
    pub created: i64,
    pub finished: i64,
}

/// A pipeline event; `status` "running" gives the commit only.
pub fn pipeline(
    path: &str,
    id: u64,
    status: &str,
    sha: &str,
    times: Times,
    builds: &[Build<'_>],
) -> Value {
    let Times {
        committed,
        created,
        finished,
    } = times;
    let builds: Vec<Value> = builds
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"id": id * 100 + i as u64, "stage": b.stage, "name": format!("{}-{i}", b.stage),
                   "status": status, "started_at": format_gitlab(b.started),
                   "finished_at": format_gitlab(b.finished), "queued_duration": b.queued,
                   "runner": {"id": 7, "description": "pool", "runner_type": "group_type",
                              "active": true, "is_shared": false, "tags": b.runner_tags}})
        })
        .collect();
    json!({
        "object_kind": "pipeline",
        "object_attributes": {"id": id, "iid": id, "ref": "main", "tag": false, "sha": sha,
            "source": "push", "status": status, "detailed_status": status,
            "created_at": format_gitlab(created), "finished_at": format_gitlab(finished),
            "duration": finished - created, "queued_duration": 1},
        "project": project(path),
        "commit": {"id": sha, "message": "change", "title": "change", "timestamp": rfc3339(committed)},
        "builds": builds,
    })
}

/// A push event with its commits.
pub fn push(path: &str, commits: &[(&str, i64)]) -> Value {
    let list: Vec<Value> = commits
        .iter()
        .map(|(sha, at)| json!({"id": sha, "message": "change", "timestamp": rfc3339(*at)}))
        .collect();
    json!({
        "object_kind": "push",
        "ref": "refs/heads/main",
        "checkout_sha": commits.last().map(|c| c.0),
        "project": project(path),
        "commits": list,
        "total_commits_count": commits.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Fact, from_gitlab};

    #[test]
    fn recorded_bodies_parse_to_the_intended_facts() {
        let d = deployment(
            "g/svc",
            4,
            "production",
            "success",
            "0123456789abcdef",
            1_000_000,
        );
        let facts = from_gitlab(d.to_string().as_bytes(), 0.0).unwrap();
        assert!(
            matches!(&facts[0], Fact::Deployment { at, sha: Some(s), .. }
            if (*at - 1_000_000.0).abs() < f64::EPSILON && s == "0123456789abcdef")
        );
        let p = push("g/svc", &[("abc", 999_000)]);
        let facts = from_gitlab(p.to_string().as_bytes(), 0.0).unwrap();
        assert!(
            matches!(&facts[0], Fact::Commit { at, .. } if (*at - 999_000.0).abs() < f64::EPSILON)
        );
    }
}
