//! The pure diff of phase 12b: the project, the pages the docs produce, the pages sop-wiki owns
//! and the ownership record.

use std::collections::BTreeMap;

use common::env;
use common::gitlab::WikiPage;
use common::plan::{Change, Plan, changed_fields};
use serde_json::{Map, Value, json};

use super::ownership::{Origin, OwnershipRecord, RECORD_FILE, bash_identity};
use super::render::{self, Page, TROUBLESHOOTING_FILE};
use super::{Desired, Observed, Op, PHASE_NAME, WIKI_FORMAT};

/// Settings of the wiki project the bash phase created it with, which this phase keeps.
pub fn project_settings() -> Value {
    json!({"visibility": "internal", "wiki_enabled": true})
}

/// What phase 12b changes, in apply order: the project, then page creates and updates (by slug),
/// page deletions (`--prune` only), and last the ownership record, so that a run stopped half
/// way leaves no page claimed that was never written.
pub fn diff(desired: &Desired, observed: &Observed) -> anyhow::Result<Plan<Op>> {
    let settings = &desired.settings;
    let project = settings.project.as_str();
    let mut plan = Plan::new(PHASE_NAME);
    let state = match observed {
        Observed::NoDocsFolder => {
            plan.warn(format!(
                "docs folder {} does not exist, so there is nothing to publish: set {} to the platform's docs/engineering folder (a relative path starts at {}, default the current directory)",
                settings.docs_dir.display(),
                env::SOP_WIKI_DOCS_DIR,
                env::CICD_PLATFORM_DIR
            ));
            return Ok(plan);
        }
        Observed::Docs(state) => state,
    };
    let want = render::render(&state.docs);
    let (pages, record) = match &state.project {
        None => {
            let mut body = project_settings();
            body["name"] = settings.project_name().into();
            body["path"] = settings.project_name().into();
            body["namespace_id"] = state.group_id.into();
            body["initialize_with_readme"] = true.into();
            let shown = json!({
                "visibility": body["visibility"], "wiki_enabled": true, "initialize_with_readme": true,
                "hardened": "as phase 12 hardens every project of the group, right after it is created",
            });
            plan.push(Change::create(
                "gitlab project",
                project,
                shown,
                &[],
                Op::CreateProject { body },
            ));
            (Vec::new(), None)
        }
        Some(existing) => {
            if let Some((before, after)) = changed_fields(&existing.settings, &project_settings()) {
                plan.push(Change::update(
                    "gitlab project",
                    project,
                    before,
                    after.clone(),
                    &[],
                    Op::EditProject { body: after },
                ));
            }
            let Some(pages) = &existing.pages else {
                plan.warn(format!(
                    "the wiki of {project} is disabled, so its pages cannot be read: apply enables it, then run apply again to publish the pages"
                ));
                return Ok(plan);
            };
            (pages.clone(), existing.record.as_ref())
        }
    };
    let doc_stems: Vec<String> = state
        .docs
        .keys()
        .filter(|file| file.as_str() != TROUBLESHOOTING_FILE)
        .filter_map(|file| file.strip_suffix(".md"))
        .map(str::to_owned)
        .collect();
    let existing: BTreeMap<&str, &WikiPage> = pages.iter().map(|p| (p.slug.as_str(), p)).collect();

    // Who owns what: the record, or before the first one the bash phase's pages.
    let mut owned = record.map(|r| r.pages.clone()).unwrap_or_default();
    let mut bash_pages: BTreeMap<String, String> = BTreeMap::new();
    if record.is_none() {
        for page in &pages {
            if let Some(identity) = bash_identity(page, &doc_stems, project) {
                owned.insert(page.slug.clone(), Origin::BashPhase12b);
                bash_pages.insert(page.slug.clone(), identity);
            }
        }
    }
    let page_name = |slug: &str| format!("{project}:{slug}");

    let mut foreign = Vec::new();
    for (slug, page) in &want {
        let Some(have) = existing.get(slug.as_str()) else {
            plan.push(Change::create(
                "wiki page",
                &page_name(slug),
                json!({"title": page.title, "content": page.content}),
                &[],
                Op::CreatePage {
                    title: page.title.clone(),
                    content: page.content.clone(),
                },
            ));
            owned.entry(slug.clone()).or_insert(Origin::SopWiki);
            continue;
        };
        let update = page_update(have, page);
        if !owned.contains_key(slug) {
            match update {
                // Exactly what we publish (e.g. written by an apply that stopped before the
                // record): claiming it changes no page.
                None => {
                    owned.insert(slug.clone(), Origin::SopWiki);
                }
                Some(_) => foreign.push(slug.clone()),
            }
            continue;
        }
        if let Some((before, after, body)) = update {
            let change = Change::update(
                "wiki page",
                &page_name(slug),
                before,
                after,
                &[],
                Op::UpdatePage {
                    slug: slug.clone(),
                    body,
                },
            );
            plan.push(match bash_pages.get(slug) {
                Some(identity) => change.left_by_bash(identity),
                None => change,
            });
        }
    }
    for slug in &foreign {
        plan.warn(format!(
            "wiki page {} exists but sop-wiki does not own it (it is not in {RECORD_FILE}), so it is left as it is and the docs' page {slug} is not published: rename or delete that page, then run apply again",
            page_name(slug)
        ));
    }

    let mut left = Vec::new();
    for (slug, origin) in owned.clone() {
        if want.contains_key(&slug) {
            continue;
        }
        let Some(have) = existing.get(slug.as_str()) else {
            owned.remove(&slug); // deleted by someone else: nothing left to own
            continue;
        };
        if !desired.prune {
            left.push(slug);
            continue;
        }
        let change = Change::delete(
            "wiki page",
            &page_name(&slug),
            json!({"title": have.title, "format": have.format}),
            &[],
            Op::DeletePage { slug: slug.clone() },
        );
        plan.push(match origin {
            Origin::BashPhase12b => change.left_by_bash(&bash_pages.get(&slug).map_or_else(
                || format!("wiki page {slug} of {project}, written by the bash phase 12b and adopted by sop-wiki (origin bash-phase-12b in {RECORD_FILE})"),
                String::clone,
            )),
            Origin::SopWiki => change.because(format!(
                "--prune: the docs folder no longer produces {slug}"
            )),
        });
        owned.remove(&slug);
    }
    if !left.is_empty() {
        plan.warn(format!(
            "{} wiki page(s) of {project} that sop-wiki owns are no longer produced by the docs folder: {}; --prune deletes them",
            left.len(),
            left.join(", ")
        ));
    }

    let next = OwnershipRecord { pages: owned };
    let record_name = page_name(RECORD_FILE);
    let change = match record {
        Some(old) if *old == next => None,
        Some(old) => Some(Change::update(
            "wiki ownership record",
            &record_name,
            json!({"pages": old.pages}),
            json!({"pages": next.pages}),
            &[],
            Op::WriteRecord {
                content: next.to_file(),
                exists: true,
            },
        )),
        None if next.pages.is_empty() => None,
        None => Some(Change::create(
            "wiki ownership record",
            &record_name,
            json!({"pages": next.pages}),
            &[],
            Op::WriteRecord {
                content: next.to_file(),
                exists: false,
            },
        )),
    };
    if let Some(change) = change {
        let adopted: Vec<&str> = next
            .pages
            .iter()
            .filter(|(slug, _)| bash_pages.contains_key(*slug))
            .map(|(slug, _)| slug.as_str())
            .collect();
        plan.push(if adopted.is_empty() {
            change
        } else {
            change.left_by_bash(&format!(
                "adopts {} wiki page(s) of {project} the bash phase 12b wrote (first-adoption rule of docs/phase-12-gitlab-harden.md): {}",
                adopted.len(),
                adopted.join(", ")
            ))
        });
    }
    Ok(plan)
}

/// The fields of `have` that differ from `want` (`before`, `after`) and the body of the `PUT`
/// that fixes them; `None` when the page is as published. Titles compare by the slug they give
/// (GitLab may show `a b` for a page titled `a-b`).
fn page_update(have: &WikiPage, want: &Page) -> Option<(Value, Value, Value)> {
    let mut before = Map::new();
    let mut after = Map::new();
    let content = have.content.as_deref().unwrap_or_default();
    if content != want.content {
        before.insert("content".into(), content.into());
        after.insert("content".into(), want.content.clone().into());
    }
    if render::slug_of_title(&have.title) != render::slug_of_title(&want.title) {
        before.insert("title".into(), have.title.clone().into());
        after.insert("title".into(), want.title.clone().into());
    }
    if have.format != WIKI_FORMAT {
        before.insert("format".into(), have.format.clone().into());
        after.insert("format".into(), WIKI_FORMAT.into());
    }
    if after.is_empty() {
        return None;
    }
    // The API needs content or title; content is always sent, so a format change alone works.
    let mut body = after.clone();
    body.insert("content".into(), want.content.clone().into());
    Some((
        Value::Object(before),
        Value::Object(after),
        Value::Object(body),
    ))
}
