//! Which wiki pages phase 12b owns. Wiki pages carry no metadata (no labels, no description), so
//! the phase keeps a record of its slugs in a file of the wiki project's repository,
//! [`RECORD_FILE`], and touches no page that is not in it.
//!
//! Before the first record exists, the pages the platform's bash phase 12b left are recognised by
//! [`bash_identity`] and adopted into the record.

use std::collections::BTreeMap;

use anyhow::Context as _;
use common::gitlab::WikiPage;
use serde::{Deserialize, Serialize};

use super::render::{self, BREADCRUMB, HOME, HOME_HEADING, SIDEBAR, TROUBLESHOOTING_INDEX};

/// The record's path in the wiki project's repository (default branch).
pub const RECORD_FILE: &str = "wiki-pages.json";

/// What the record says about itself, for a person who finds the file.
const ABOUT: &str = "The wiki pages of this project that cicd-buildout's sop-wiki (phase 12b) publishes: it updates them, and deletes them with --prune when the docs no longer produce them. Pages not listed here are never touched. Written by sop-wiki; do not edit.";

/// How a page came to be owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// sop-wiki created it.
    SopWiki,
    /// The platform's bash phase 12b wrote it; sop-wiki adopted it. Its deletion is marked as the
    /// removal of a bash leftover.
    #[serde(rename = "bash-phase-12b")]
    BashPhase12b,
}

/// The content of [`RECORD_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipRecord {
    /// Slug → how sop-wiki came to own it.
    pub pages: BTreeMap<String, Origin>,
}

#[derive(Serialize, Deserialize)]
struct RecordFile {
    #[serde(default)]
    about: String,
    pages: BTreeMap<String, Origin>,
}

impl OwnershipRecord {
    /// Reads the record's file text; an unreadable record is an error naming the fix (a guess
    /// could delete or overwrite pages that are not ours).
    pub fn parse(text: &str, project: &str) -> anyhow::Result<Self> {
        let file: RecordFile = serde_json::from_str(text).with_context(|| {
            format!(
                "reading the ownership record {RECORD_FILE} of GitLab project {project}: not the JSON sop-wiki writes; restore it from the repository's history (or delete it, and sop-wiki adopts the pages by the first-adoption rule of docs/phase-12-gitlab-harden.md)"
            )
        })?;
        Ok(Self { pages: file.pages })
    }

    /// The file text: stable (sorted, pretty, one trailing newline), so an unchanged set is an
    /// unchanged file.
    pub fn to_file(&self) -> String {
        let file = RecordFile {
            about: ABOUT.to_owned(),
            pages: self.pages.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The bash phase 12b's identity of a page in the wiki project, or `None` when `page` is not one
/// it wrote. Consulted only while the project has no ownership record: once sop-wiki has run, the
/// record alone says what is ours, so this rule never applies to a page sop-wiki created.
///
/// The bash phase replaced the whole wiki on every run (git push of a fresh tree), so in that
/// project a page is its leftover when it is one of:
/// - `Home` starting with `# Engineering SOPs` (its landing page, or the seed page it created
///   first);
/// - `_sidebar` starting with `**[Home](Home)**` (its navigation);
/// - `troubleshooting-sop` holding its `## Sections` list (the troubleshooting index);
/// - `troubleshooting-<digits>-<a-z0-9 and ->` starting with the breadcrumb back to the index (a
///   sub-page it split; also one whose section the SOP no longer has);
/// - a Markdown page whose slug is the stem of a file in the docs folder (the copy it pushed).
pub fn bash_identity(page: &WikiPage, doc_stems: &[String], project: &str) -> Option<String> {
    let content = page.content.as_deref().unwrap_or_default();
    let slug = page.slug.as_str();
    let what = if slug == HOME && content.starts_with(HOME_HEADING) {
        format!("its landing page (first line `{HOME_HEADING}`)")
    } else if slug == SIDEBAR && content.starts_with("**[Home](Home)**") {
        "its navigation page (first line `**[Home](Home)**`)".to_owned()
    } else if slug == TROUBLESHOOTING_INDEX && content.contains("\n---\n\n## Sections\n") {
        "its troubleshooting index (a `## Sections` list of the sub-pages)".to_owned()
    } else if is_sub_page_slug(slug) && content.starts_with(BREADCRUMB) {
        "a troubleshooting sub-page it split (first line: the breadcrumb back to the index)"
            .to_owned()
    } else if page.format == "markdown"
        && doc_stems
            .iter()
            .any(|stem| render::slug_of_title(stem) == slug)
    {
        format!("its copy of the docs file {slug}.md")
    } else {
        return None;
    };
    Some(format!(
        "wiki page {slug} of {project}, written by the bash phase 12b: {what}"
    ))
}

/// `troubleshooting-<digits>-<slug>` as the bash phase names the sub-pages.
fn is_sub_page_slug(slug: &str) -> bool {
    let Some(rest) = slug.strip_prefix("troubleshooting-") else {
        return false;
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(name) = rest[digits..].strip_prefix('-') else {
        return false;
    };
    digits >= 2
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(slug: &str, content: &str) -> WikiPage {
        WikiPage {
            slug: slug.to_owned(),
            title: slug.to_owned(),
            format: "markdown".to_owned(),
            content: Some(content.to_owned()),
        }
    }

    #[test]
    fn the_bash_identity_needs_the_slug_and_the_bash_content() {
        let stems = vec!["system-architecture".to_owned()];
        let p = "platform_services/sop-wiki";
        for (slug, content) in [
            ("Home", "# Engineering SOPs\nInitializing..."),
            ("_sidebar", "**[Home](Home)**\n\n---\n"),
            (
                "troubleshooting-sop",
                "# T\n\n---\n\n## Sections\n\n- [1. A](troubleshooting-01-a)\n",
            ),
            (
                "troubleshooting-07-old-section",
                "> **[← Back to Troubleshooting Index](troubleshooting-sop)**\n\n## 7. Old\n",
            ),
            ("system-architecture", "anything"),
        ] {
            let identity = bash_identity(&page(slug, content), &stems, p);
            assert!(
                identity.as_deref().is_some_and(|i| i.starts_with(&format!(
                    "wiki page {slug} of {p}, written by the bash phase 12b: "
                ))),
                "{slug}: {identity:?}"
            );
        }
        for (slug, content) in [
            ("Home", "# Our team's notes\n"),
            ("_sidebar", "- [Notes](notes)\n"),
            ("troubleshooting-sop", "# T\nno list\n"),
            ("troubleshooting-07-old-section", "## 7. Old\n"),
            (
                "troubleshooting-7-x",
                "> **[← Back to Troubleshooting Index](troubleshooting-sop)**\n",
            ),
            ("team-notes", "# Engineering SOPs\n"),
        ] {
            assert_eq!(
                bash_identity(&page(slug, content), &stems, p),
                None,
                "{slug}"
            );
        }
        let mut rdoc = page("system-architecture", "x");
        rdoc.format = "rdoc".into();
        assert_eq!(
            bash_identity(&rdoc, &stems, p),
            None,
            "the bash phase pushed .md files only"
        );
    }

    #[test]
    fn the_record_round_trips_and_says_what_it_is() {
        let record = OwnershipRecord {
            pages: [
                ("Home".to_owned(), Origin::BashPhase12b),
                ("flow-charts".to_owned(), Origin::SopWiki),
            ]
            .into(),
        };
        let text = record.to_file();
        assert!(
            text.contains("\"Home\": \"bash-phase-12b\"") && text.contains("never touched"),
            "{text}"
        );
        assert_eq!(OwnershipRecord::parse(&text, "p").unwrap(), record);
        let e = OwnershipRecord::parse("{", "ps/sop-wiki").unwrap_err();
        assert!(
            format!("{e:#}").contains("restore it from the repository's history"),
            "{e:#}"
        );
    }
}
