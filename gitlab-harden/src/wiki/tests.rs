//! Unit tests of the pure diff of phase 12b, with plan snapshots (`snapshots/`).

use super::ownership::Origin;
use super::render::render;
use super::*;

const PROJECT: &str = "platform_services/sop-wiki";

fn desired(prune: bool) -> Desired {
    Desired {
        settings: WikiSettings {
            docs_dir: PathBuf::from("/platform/docs/engineering"),
            project: PROJECT.to_owned(),
        },
        prune,
    }
}

/// Three docs: two plain ones and a troubleshooting SOP with two numbered sections.
fn docs() -> BTreeMap<String, String> {
    [
        (
            "system-architecture.md",
            "# System Architecture\n\nThree nodes.\nSee [flows](flow-charts.md).\n",
        ),
        ("flow-charts.md", "# Flow Charts\n\nDeploy, then verify.\n"),
        (
            "troubleshooting-sop.md",
            "# Troubleshooting SOP\n\n## 1. Pods Pending\n\nCheck quotas.\n\n## 2. TLS/Certificate Issues\n\nRenew.\n\n## Related Documentation\n\n- [System Architecture](system-architecture.md)\n",
        ),
    ]
    .into_iter()
    .map(|(file, text)| (file.to_owned(), text.to_owned()))
    .collect()
}

fn wiki_page(slug: &str, content: &str) -> WikiPage {
    WikiPage {
        slug: slug.to_owned(),
        title: slug.to_owned(),
        format: WIKI_FORMAT.to_owned(),
        content: Some(content.to_owned()),
    }
}

/// The wiki exactly as sop-wiki publishes `docs`.
fn published(docs: &BTreeMap<String, String>) -> Vec<WikiPage> {
    render(docs)
        .iter()
        .map(|(slug, page)| wiki_page(slug, &page.content))
        .collect()
}

fn record_of(pages: &[WikiPage], origin: Origin) -> OwnershipRecord {
    OwnershipRecord {
        pages: pages.iter().map(|p| (p.slug.clone(), origin)).collect(),
    }
}

fn observed(
    docs: BTreeMap<String, String>,
    pages: Vec<WikiPage>,
    record: Option<OwnershipRecord>,
) -> Observed {
    Observed::Docs(WikiState {
        docs,
        group_id: 7,
        project: Some(ProjectState {
            id: 42,
            settings: project_settings(),
            default_branch: "main".into(),
            pages: Some(pages),
            record,
        }),
    })
}

fn titles<A>(plan: &Plan<A>) -> Vec<String> {
    plan.changes
        .iter()
        .map(|c| format!("{:?} {}", c.action, c.name))
        .collect()
}

#[test]
fn a_fresh_platform_gets_the_project_the_pages_and_the_record() {
    let plan = diff(
        &desired(false),
        &Observed::Docs(WikiState {
            docs: docs(),
            group_id: 7,
            project: None,
        }),
    )
    .unwrap();
    let s = plan.summary();
    assert_eq!((s.create, s.update, s.delete), (9, 0, 0), "{plan}");
    let Op::CreateProject { body } = &plan.changes[0].op else {
        panic!("the project first: {plan}");
    };
    assert_eq!(
        body,
        &json!({"name": "sop-wiki", "path": "sop-wiki", "namespace_id": 7, "visibility": "internal",
                "wiki_enabled": true, "initialize_with_readme": true})
    );
    let Op::WriteRecord { content, exists } = &plan.changes[8].op else {
        panic!("the record last: {plan}");
    };
    assert!(!exists);
    let record = OwnershipRecord::parse(content, PROJECT).unwrap();
    assert_eq!(record.pages.len(), 7);
    assert!(record.pages.values().all(|o| *o == Origin::SopWiki));
    assert!(plan.changes.iter().all(|c| !c.is_bash_leftover()));
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn a_published_wiki_gives_an_empty_plan() {
    let pages = published(&docs());
    let record = record_of(&pages, Origin::SopWiki);
    let plan = diff(&desired(true), &observed(docs(), pages, Some(record))).unwrap();
    assert!(plan.is_empty(), "{plan}");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

#[test]
fn one_edited_doc_is_one_page_update() {
    let pages = published(&docs());
    let record = record_of(&pages, Origin::SopWiki);
    let mut edited = docs();
    edited.insert(
        "flow-charts.md".into(),
        "# Flow Charts\n\nDeploy, then verify, then roll back if needed.\n".into(),
    );
    let plan = diff(&desired(false), &observed(edited, pages, Some(record))).unwrap();
    assert_eq!(
        titles(&plan),
        ["Update platform_services/sop-wiki:flow-charts"]
    );
    let Op::UpdatePage { slug, body } = &plan.changes[0].op else {
        panic!("{plan}");
    };
    assert_eq!(slug, "flow-charts");
    assert_eq!(
        body,
        &json!({"content": "# Flow Charts\n\nDeploy, then verify, then roll back if needed.\n"}),
        "only the content: the title and format are as published"
    );
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn a_removed_doc_stays_without_prune_and_goes_with_it() {
    let pages = published(&docs());
    let record = record_of(&pages, Origin::SopWiki);
    let mut fewer = docs();
    fewer.remove("flow-charts.md");
    let kept = diff(
        &desired(false),
        &observed(fewer.clone(), pages.clone(), Some(record.clone())),
    )
    .unwrap();
    assert_eq!(
        titles(&kept),
        [
            "Update platform_services/sop-wiki:Home",
            "Update platform_services/sop-wiki:_sidebar",
        ],
        "the lists no longer link it; the page itself stays"
    );
    assert_eq!(kept.warnings.len(), 1);
    assert!(
        kept.warnings[0].contains("flow-charts") && kept.warnings[0].contains("--prune deletes"),
        "{:?}",
        kept.warnings
    );
    let pruned = diff(&desired(true), &observed(fewer, pages, Some(record))).unwrap();
    assert_eq!(
        titles(&pruned),
        [
            "Update platform_services/sop-wiki:Home",
            "Update platform_services/sop-wiki:_sidebar",
            "Delete platform_services/sop-wiki:flow-charts",
            "Update platform_services/sop-wiki:wiki-pages.json",
        ]
    );
    assert!(pruned.warnings.is_empty(), "{:?}", pruned.warnings);
    insta::assert_snapshot!(pruned.to_string());
}

#[test]
fn pages_we_do_not_own_are_never_touched() {
    let mut pages = published(&docs());
    let record = record_of(&pages, Origin::SopWiki);
    // Someone's own page, and someone's page where a doc would go (the record does not list it).
    pages.push(wiki_page("team-notes", "# Notes\n"));
    let mut more = docs();
    more.insert("runbook.md".into(), "# Runbook\n".into());
    pages.push(wiki_page("runbook", "# Our runbook, not the docs'\n"));
    let plan = diff(
        &desired(true),
        &observed(more.clone(), pages.clone(), Some(record.clone())),
    )
    .unwrap();
    assert_eq!(
        titles(&plan),
        [
            "Update platform_services/sop-wiki:Home",
            "Update platform_services/sop-wiki:_sidebar",
        ],
        "the lists gain the runbook; neither foreign page is written, even with --prune"
    );
    assert!(
        plan.warnings.len() == 1
            && plan.warnings[0].contains("sop-wiki:runbook exists but sop-wiki does not own it"),
        "{:?}",
        plan.warnings
    );
    // The same page with exactly the content we publish (an apply stopped before the record):
    // claimed in the record, no page written.
    let runbook = pages.iter_mut().find(|p| p.slug == "runbook").unwrap();
    runbook.content = Some("# Runbook\n".into());
    let claim = diff(&desired(true), &observed(more, pages, Some(record))).unwrap();
    assert_eq!(
        titles(&claim),
        [
            "Update platform_services/sop-wiki:Home",
            "Update platform_services/sop-wiki:_sidebar",
            "Update platform_services/sop-wiki:wiki-pages.json",
        ]
    );
    assert_eq!(claim.changes[2].diff, ["+ pages.runbook: sop-wiki"]);
}

#[test]
fn the_bash_phase_pages_are_adopted_and_its_stale_ones_pruned() {
    let mut pages = published(&docs());
    for page in &mut pages {
        match page.slug.as_str() {
            // What the bash phase's run left: its own Home and sidebar text, an older doc.
            "Home" => page.content = Some("# Engineering SOPs\n\nWelcome (bash).\n".into()),
            "_sidebar" => page.content = Some("**[Home](Home)**\n\n---\n\n(bash)\n".into()),
            "system-architecture" => {
                page.content = Some("# System Architecture\n\nTwo nodes.\n".into());
            }
            _ => {}
        }
    }
    pages.push(wiki_page(
        "troubleshooting-07-etcd-backups",
        "> **[← Back to Troubleshooting Index](troubleshooting-sop)**\n\n## 7. etcd Backups\n",
    ));
    pages.push(wiki_page("team-notes", "# Notes\n"));
    let plan = diff(&desired(true), &observed(docs(), pages, None)).unwrap();
    assert_eq!(
        titles(&plan),
        [
            "Update platform_services/sop-wiki:Home",
            "Update platform_services/sop-wiki:_sidebar",
            "Update platform_services/sop-wiki:system-architecture",
            "Delete platform_services/sop-wiki:troubleshooting-07-etcd-backups",
            "Create platform_services/sop-wiki:wiki-pages.json",
        ]
    );
    assert!(
        plan.changes
            .iter()
            .all(common::plan::Change::is_bash_leftover),
        "each adoption and removal names the bash identity: {plan}"
    );
    let Op::WriteRecord { content, .. } = &plan.changes[4].op else {
        panic!("{plan}");
    };
    let record = OwnershipRecord::parse(content, PROJECT).unwrap();
    assert!(
        !record.pages.contains_key("team-notes"),
        "not a bash page: never ours"
    );
    assert!(
        !record.pages.contains_key("troubleshooting-07-etcd-backups"),
        "deleted"
    );
    assert_eq!(record.pages.len(), 7);
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn a_missing_docs_folder_is_an_empty_plan_that_says_how_to_set_it() {
    let plan = diff(&desired(false), &Observed::NoDocsFolder).unwrap();
    assert!(plan.is_empty());
    assert_eq!(plan.warnings.len(), 1);
    let w = &plan.warnings[0];
    assert!(
        w.contains("/platform/docs/engineering") && w.contains("SOP_WIKI_DOCS_DIR"),
        "{w}"
    );
}

#[test]
fn project_settings_converge_and_a_disabled_wiki_is_enabled_first() {
    let Observed::Docs(mut state) = observed(docs(), Vec::new(), None) else {
        unreachable!()
    };
    let project = state.project.as_mut().unwrap();
    project.settings = json!({"visibility": "private", "wiki_enabled": false});
    project.pages = None;
    let plan = diff(&desired(false), &Observed::Docs(state)).unwrap();
    assert_eq!(titles(&plan), ["Update platform_services/sop-wiki"]);
    assert_eq!(
        plan.changes[0].diff,
        [
            "~ visibility: private -> internal",
            "~ wiki_enabled: false -> true"
        ]
    );
    assert!(
        plan.warnings[0].contains("wiki of platform_services/sop-wiki is disabled"),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn settings_default_to_the_platform_docs_and_the_first_group() {
    let env = Environment::load_from(
        None,
        [("CICD_PLATFORM_DIR".to_owned(), "/srv/platform".to_owned())],
    )
    .unwrap();
    let s = WikiSettings::from_environment(&env).unwrap();
    assert_eq!(s.docs_dir, PathBuf::from("/srv/platform/docs/engineering"));
    assert_eq!(s.project, "platform_services/sop-wiki");
    let env = Environment::load_from(
        None,
        [
            ("CICD_PLATFORM_DIR".to_owned(), "/srv/platform".to_owned()),
            ("SOP_WIKI_DOCS_DIR".to_owned(), "handbook".to_owned()),
            (
                "GITLAB_GROUPS".to_owned(),
                " ops , platform_services".to_owned(),
            ),
        ],
    )
    .unwrap();
    let s = WikiSettings::from_environment(&env).unwrap();
    assert_eq!(s.docs_dir, PathBuf::from("/srv/platform/handbook"));
    assert_eq!((s.group(), s.project_name()), ("ops", "sop-wiki"));
}

#[test]
fn docs_are_the_md_files_of_the_folder_only() {
    let dir = tempfile_dir();
    std::fs::write(dir.join("a.md"), "# A\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    std::fs::write(dir.join(".hidden.md"), "x").unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/b.md"), "# B\n").unwrap();
    let docs = read_docs(&dir).unwrap().unwrap();
    assert_eq!(docs.keys().collect::<Vec<_>>(), ["a.md"]);
    assert!(read_docs(&dir.join("missing")).unwrap().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sop-wiki-docs-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
