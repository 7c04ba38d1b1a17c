//! Phase 12b `sop-wiki` against the sandbox's GitLab stand-in. Its wiki endpoints follow GitLab's
//! "Project wikis API" (doc/api/wikis.md; sandbox/fixtures/gitlab-docs/wikis-api.md): pages are
//! created with a title from which GitLab derives the slug ("Create a new wiki page"), edited by
//! slug ("Edit an existing wiki page"), deleted with 204 ("Delete a wiki page") and listed with
//! their content (`with_content`, "List wiki pages"). The project is created as projects.md
//! "Create project" describes (`visibility`, `wiki_enabled`, `initialize_with_readme`), and the
//! ownership record is committed through commits.md "Create a commit with multiple files and
//! actions". Writes are counted by the stand-in (per route, and the wiki's own write log); end
//! states are read back from the stand-in's data.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use sandbox::PhaseRun as Run;
use sandbox::standins::Running;
use sandbox::standins::gitlab::GitLabData;
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

const PROJECT: &str = "platform_services/sop-wiki";

async fn start() -> Sandbox {
    common::cli::install_crypto_provider();
    Sandbox::start(Options {
        kube: false,
        vault: false,
        prometheus: false,
        ..Options::default()
    })
    .await
    .expect("sandbox starts")
}

/// Runs sop-wiki with the sandbox's env file and `docs` as the docs folder.
async fn sop_wiki(sandbox: &Sandbox, docs: &Path, args: &[&str]) -> Run {
    let docs = docs.to_str().expect("a UTF-8 path");
    let run = sandbox::run_phase_binary(
        env!("CARGO_BIN_EXE_sop-wiki"),
        &sandbox.env_file(),
        args,
        &[("CICD_HTTP_RETRIES", "1"), ("SOP_WIKI_DOCS_DIR", docs)],
    )
    .await;
    let token = sandbox.get("GITLAB_API_TOKEN");
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "the token never prints"
    );
    run
}

fn ok(run: &Run) -> &Run {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run
}

fn plan_json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

fn summary(run: &Run) -> (u64, u64, u64) {
    let s = &plan_json(run)["summary"];
    let n = |k: &str| s[k].as_u64().unwrap();
    (n("create"), n("update"), n("delete"))
}

fn gitlab(sandbox: &Sandbox) -> &Running {
    sandbox.standin("gitlab")
}

fn data(sandbox: &Sandbox) -> std::sync::MutexGuard<'_, GitLabData> {
    sandbox.gitlab.as_ref().expect("in-process GitLab").lock()
}

fn writes(sandbox: &Sandbox) -> u64 {
    gitlab(sandbox)
        .control
        .counters
        .writes
        .load(Ordering::Relaxed)
}

/// Forgets the counted requests and the wiki's write log.
fn reset(sandbox: &Sandbox) {
    let c = &gitlab(sandbox).control.counters;
    c.reads.store(0, Ordering::Relaxed);
    c.writes.store(0, Ordering::Relaxed);
    c.by_route.lock().unwrap().clear();
    data(sandbox).wikis.log.clear();
}

/// `(method, slug)` of every wiki write since the last [`reset`].
fn wiki_writes(sandbox: &Sandbox) -> Vec<(String, String)> {
    data(sandbox)
        .wikis
        .log
        .iter()
        .map(|w| (w.method.to_owned(), w.slug.clone()))
        .collect()
}

fn project_id(sandbox: &Sandbox) -> u64 {
    data(sandbox)
        .project_by_path(PROJECT)
        .expect("the wiki project")
        .id
}

fn slugs(sandbox: &Sandbox) -> Vec<String> {
    let id = project_id(sandbox);
    data(sandbox).wikis.slugs(id)
}

fn page(sandbox: &Sandbox, slug: &str) -> Option<String> {
    let id = project_id(sandbox);
    data(sandbox).wikis.pages[&id]
        .get(slug)
        .map(|p| p.content.clone())
}

/// The ownership record as committed: slug → origin.
fn record(sandbox: &Sandbox) -> Value {
    let d = data(sandbox);
    let text = &d.project_by_path(PROJECT).unwrap().repository.files["wiki-pages.json"];
    serde_json::from_str::<Value>(text).unwrap()["pages"].clone()
}

async fn api(sandbox: &Sandbox, method: reqwest::Method, path: &str, body: Value) -> Value {
    let url = format!("{}/api/v4/{path}", sandbox.get("GITLAB_URL"));
    let resp = reqwest::Client::new()
        .request(method, &url)
        .header("PRIVATE-TOKEN", sandbox.get("GITLAB_API_TOKEN"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// The docs folder of the tests: exactly three files, two plain docs and a troubleshooting SOP
/// with two numbered sections.
fn write_docs(sandbox: &Sandbox) -> PathBuf {
    let dir = sandbox.dir().join("docs-engineering");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in [
        (
            "system-architecture.md",
            "# System Architecture\n\nThree server nodes.\nSee [the flows](flow-charts.md#deploy).\n",
        ),
        (
            "flow-charts.md",
            "# Flow Charts\n\n## Deploy\n\nPlan, then apply.\n",
        ),
        (
            "troubleshooting-sop.md",
            "# Troubleshooting SOP\n\n## 1. Pods Pending\n\nCheck the quotas.\n\n## 2. TLS/Certificate Issues\n\nRenew the certificate.\n\n## Related Documentation\n\n- [System Architecture](system-architecture.md)\n",
        ),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

const PUBLISHED: [&str; 7] = [
    "Home",
    "_sidebar",
    "flow-charts",
    "system-architecture",
    "troubleshooting-01-pods-pending",
    "troubleshooting-02-tls-certificate-issues",
    "troubleshooting-sop",
];

#[tokio::test(flavor = "multi_thread")]
async fn three_docs_become_the_wiki_and_only_changed_pages_are_written() {
    let sandbox = start().await;
    let docs = write_docs(&sandbox);
    reset(&sandbox);

    assert_eq!(
        sop_wiki(&sandbox, &docs, &["check"]).await.code,
        2,
        "drift before apply"
    );
    let plan = sop_wiki(&sandbox, &docs, &["--output", "json", "plan"]).await;
    assert_eq!(ok(&plan).code, 0);
    assert_eq!(summary(&plan), (9, 0, 0), "project, 7 pages, record");
    assert_eq!(writes(&sandbox), 0, "check and plan write nothing");

    let apply = sop_wiki(&sandbox, &docs, &["apply"]).await;
    ok(&apply);
    assert_eq!(slugs(&sandbox), PUBLISHED);
    assert_eq!(
        wiki_writes(&sandbox)
            .iter()
            .filter(|(m, _)| m == "POST")
            .count(),
        7,
        "one create per page"
    );
    assert_eq!(
        writes(&sandbox),
        9 + 11,
        "POST /projects, 7 pages, 1 commit of the record, and the 11 writes phase 12 makes on a \
         fresh project of a fresh group (settings, main and v* protection, approval settings and \
         rule, the 5 approver groups it mirrors from Keycloak, the default CODEOWNERS commit), \
         done right after its creation so that a rerun of phase 12 finds nothing to do"
    );
    {
        let d = data(&sandbox);
        let p = d.project_by_path(PROJECT).unwrap();
        assert!(
            p.protected_branches.iter().any(|b| b.name == "main"),
            "the new project is hardened as phase 12 hardens every project"
        );
        assert_eq!(p.settings["visibility"], "internal");
        assert_eq!(p.settings["wiki_enabled"], true);
        assert!(
            p.repository.files.contains_key("README.md"),
            "initialize_with_readme"
        );
        assert!(
            p.repository.files.contains_key(".gitlab/CODEOWNERS"),
            "phase 12's default CODEOWNERS, in the repository initialised with a README"
        );
    }
    let owned: Vec<String> = record(&sandbox)
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        owned, PUBLISHED,
        "the record lists exactly the published pages"
    );
    assert!(
        page(&sandbox, "system-architecture")
            .unwrap()
            .contains("](flow-charts#deploy)"),
        "sibling links lose .md"
    );
    assert!(
        page(&sandbox, "troubleshooting-02-tls-certificate-issues")
            .unwrap()
            .starts_with(
                "> **[← Back to Troubleshooting Index](troubleshooting-sop)**\n\n## 2. TLS"
            )
    );

    // Rerun, plan and check: nothing to write.
    reset(&sandbox);
    ok(&sop_wiki(&sandbox, &docs, &["apply"]).await);
    assert_eq!(writes(&sandbox), 0, "a second apply makes 0 writes");
    let plan = sop_wiki(&sandbox, &docs, &["--output", "json", "plan"]).await;
    assert_eq!(summary(ok(&plan)), (0, 0, 0));
    assert_eq!(
        sop_wiki(&sandbox, &docs, &["check"]).await.code,
        0,
        "no drift after apply"
    );
    assert_eq!(writes(&sandbox), 0, "plan and check make 0 writes");

    // Someone else's page in the same wiki.
    let id = project_id(&sandbox);
    api(
        &sandbox,
        reqwest::Method::POST,
        &format!("projects/{id}/wikis"),
        json!({"title": "team-notes", "content": "# Our notes\n"}),
    )
    .await;

    // One edited doc: exactly one page update.
    std::fs::write(
        docs.join("flow-charts.md"),
        "# Flow Charts\n\n## Deploy\n\nPlan, then apply, then check.\n",
    )
    .unwrap();
    reset(&sandbox);
    let plan = sop_wiki(&sandbox, &docs, &["--output", "json", "plan"]).await;
    assert_eq!(summary(ok(&plan)), (0, 1, 0), "update=1");
    ok(&sop_wiki(&sandbox, &docs, &["apply"]).await);
    assert_eq!(
        wiki_writes(&sandbox),
        [("PUT".to_owned(), "flow-charts".to_owned())]
    );
    assert_eq!(writes(&sandbox), 1, "exactly one PUT, nothing else");
    assert!(
        page(&sandbox, "flow-charts")
            .unwrap()
            .contains("then check.")
    );

    // A removed doc: without --prune its page stays (Home and the sidebar stop linking it).
    std::fs::remove_file(docs.join("flow-charts.md")).unwrap();
    reset(&sandbox);
    let plan = sop_wiki(&sandbox, &docs, &["--output", "json", "plan"]).await;
    assert_eq!(summary(ok(&plan)), (0, 2, 0), "Home and _sidebar only");
    let warnings = plan_json(&plan)["warnings"].to_string();
    assert!(
        warnings.contains("flow-charts") && warnings.contains("--prune deletes"),
        "{warnings}"
    );
    ok(&sop_wiki(&sandbox, &docs, &["apply"]).await);
    assert_eq!(
        wiki_writes(&sandbox),
        [
            ("PUT".to_owned(), "Home".to_owned()),
            ("PUT".to_owned(), "_sidebar".to_owned())
        ]
    );
    assert!(
        slugs(&sandbox).contains(&"flow-charts".to_owned()),
        "not deleted without --prune"
    );

    // With --prune: exactly that page goes, and the record forgets it.
    reset(&sandbox);
    let pruned = sop_wiki(&sandbox, &docs, &["--prune", "apply"]).await;
    ok(&pruned);
    assert_eq!(
        wiki_writes(&sandbox),
        [("DELETE".to_owned(), "flow-charts".to_owned())]
    );
    assert_eq!(writes(&sandbox), 2, "the DELETE and the record's commit");
    assert!(record(&sandbox).get("flow-charts").is_none());
    assert_eq!(
        page(&sandbox, "team-notes").as_deref(),
        Some("# Our notes\n"),
        "a page we do not own is never touched, even with --prune"
    );
    assert!(record(&sandbox).get("team-notes").is_none());
    reset(&sandbox);
    ok(&sop_wiki(&sandbox, &docs, &["--prune", "apply"]).await);
    assert_eq!(writes(&sandbox), 0, "pruned for good");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bash_phase_wiki_is_adopted_and_its_stale_pages_pruned_only_with_prune() {
    let sandbox = start().await;
    let docs = write_docs(&sandbox);
    // What the bash phase 12b leaves (research note section 2): the project as it creates it, its seed
    // page through the Wikis API, then a git push of the whole tree: pages named after the files,
    // here an older flow chart and a section the SOP no longer has.
    let group = data(&sandbox)
        .group_by_path("platform_services")
        .unwrap()
        .id;
    let created = api(
        &sandbox,
        reqwest::Method::POST,
        "projects",
        json!({"name": "sop-wiki", "path": "sop-wiki", "namespace_id": group, "visibility": "internal",
               "wiki_enabled": true, "initialize_with_readme": true}),
    )
    .await;
    let id = created["id"].as_u64().unwrap();
    api(
        &sandbox,
        reqwest::Method::POST,
        &format!("projects/{id}/wikis"),
        json!({"title": "Home", "content": "# Engineering SOPs\nInitializing...", "format": "markdown"}),
    )
    .await;
    {
        let mut d = data(&sandbox);
        d.wikis
            .put(id, "flow-charts", "# Flow Charts\n\nAn older version.\n");
        d.wikis.put(
            id,
            "troubleshooting-07-etcd-backups",
            "> **[← Back to Troubleshooting Index](troubleshooting-sop)**\n\n## 7. etcd Backups\n",
        );
        d.wikis.put(
            id,
            "team-notes",
            "# Engineering SOPs\n\nnot the bash phase's\n",
        );
    }
    reset(&sandbox);

    let report = sop_wiki(
        &sandbox,
        &docs,
        &["--prune", "--adopt-report", "--output", "json"],
    )
    .await;
    let report = plan_json(ok(&report));
    let leftovers: Vec<String> = report["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["action"].as_str().unwrap(),
                l["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        leftovers,
        [
            "update platform_services/sop-wiki:Home",
            "update platform_services/sop-wiki:flow-charts",
            "delete platform_services/sop-wiki:troubleshooting-07-etcd-backups",
            "create platform_services/sop-wiki:wiki-pages.json",
        ]
    );
    assert!(
        report["leftovers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["reason"]
                .as_str()
                .unwrap()
                .starts_with("left by the bash phase: ")),
        "{report}"
    );
    assert_eq!(writes(&sandbox), 0, "the report writes nothing");

    // Without --prune the stale section stays; the plan says so.
    let plan = sop_wiki(&sandbox, &docs, &["--output", "json", "plan"]).await;
    let doc = plan_json(ok(&plan));
    assert!(
        doc["warnings"]
            .to_string()
            .contains("troubleshooting-07-etcd-backups"),
        "{doc}"
    );
    assert_eq!(doc["summary"]["delete"], 0);

    ok(&sop_wiki(&sandbox, &docs, &["--prune", "apply"]).await);
    let mut want: Vec<String> = PUBLISHED.iter().map(|s| (*s).to_owned()).collect();
    want.push("team-notes".into());
    want.sort();
    assert_eq!(slugs(&sandbox), want);
    assert_eq!(
        page(&sandbox, "team-notes").as_deref(),
        Some("# Engineering SOPs\n\nnot the bash phase's\n"),
        "a page without the bash phase's identity is not adopted, whatever it says"
    );
    let record = record(&sandbox);
    assert_eq!(record["Home"], "bash-phase-12b");
    assert_eq!(record["flow-charts"], "bash-phase-12b");
    assert_eq!(record["system-architecture"], "sop-wiki");
    assert!(record.get("team-notes").is_none());
    reset(&sandbox);
    ok(&sop_wiki(&sandbox, &docs, &["--prune", "apply"]).await);
    assert_eq!(writes(&sandbox), 0, "the rerun makes 0 writes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_docs_folder_publishes_nothing_and_says_which() {
    let sandbox = start().await;
    let missing = sandbox.dir().join("no-such-docs");
    reset(&sandbox);
    let plan = sop_wiki(&sandbox, &missing, &["check"]).await;
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&missing.display().to_string())
            && plan.stdout.contains("SOP_WIKI_DOCS_DIR"),
        "{}",
        plan.stdout
    );
    let counters = &gitlab(&sandbox).control.counters;
    assert_eq!(
        counters.reads.load(Ordering::Relaxed) + counters.writes.load(Ordering::Relaxed),
        0,
        "GitLab is not even asked"
    );
}
