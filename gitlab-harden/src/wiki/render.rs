//! The pure rendering of the SOP wiki: the docs folder's `*.md` files → wiki pages (slug → title
//! and content), laid out as the platform's bash phase 12b lays them out
//! (docs/research/upstream-bash-phases.md section 2), written here in our own words:
//!
//! - every `*.md` except the troubleshooting SOP is one page, its file stem the slug;
//! - the troubleshooting SOP is split at its numbered level-2 headings (`## 1. Title`) into one
//!   sub-page per section, `troubleshooting-NN-<slug>`, plus an index page `troubleshooting-sop`;
//! - a generated landing page `Home` and navigation `_sidebar`;
//! - links to sibling `.md` files lose the extension (wiki pages have none).
//!
//! Two deliberate differences from the bash phase: headings inside fenced code blocks do not split
//! (the bash split is line-based), and a missing troubleshooting SOP gives no index and no
//! sub-pages instead of aborting the run.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The docs file that is split into the troubleshooting index and its sub-pages.
pub const TROUBLESHOOTING_FILE: &str = "troubleshooting-sop.md";
/// Slug of the troubleshooting index page.
pub const TROUBLESHOOTING_INDEX: &str = "troubleshooting-sop";
/// Slug of the wiki's landing page (GitLab shows the page `Home` first).
pub const HOME: &str = "Home";
/// Slug of the page GitLab shows as the wiki's navigation instead of the page tree.
pub const SIDEBAR: &str = "_sidebar";
/// First line of every troubleshooting sub-page: the way back to the index.
pub const BREADCRUMB: &str = "> **[← Back to Troubleshooting Index](troubleshooting-sop)**";
/// Heading of the troubleshooting SOP's closing section, kept on the index page.
const RELATED_HEADING: &str = "## Related Documentation";
/// Heading of the landing page (also the bash phase's, which the adoption rule recognises).
pub const HOME_HEADING: &str = "# Engineering SOPs";

/// One wiki page to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The title the page is created with. GitLab derives the slug from the title, so the title
    /// is the slug itself (a file stem): the page lands exactly where the other pages link to.
    pub title: String,
    /// The page's Markdown source.
    pub content: String,
}

/// A known document of the platform's `docs/engineering`: how the landing page describes it and
/// where the sidebar lists it (the bash phase's fixed table and groups, in its order).
struct KnownDoc {
    slug: &'static str,
    title: &'static str,
    description: &'static str,
    group: &'static str,
}

const ARCHITECTURE: &str = "Architecture";
const OPERATIONS: &str = "Operations";
const CI_CD: &str = "CI/CD";
/// Sidebar group of the documents the table below does not know.
const MORE: &str = "More";

/// Landing-page rows in the order the bash phase lists them; the descriptions are ours.
const KNOWN_DOCS: &[KnownDoc] = &[
    KnownDoc {
        slug: "system-architecture",
        title: "System Architecture",
        description: "How the cluster, its network and its components fit together",
        group: ARCHITECTURE,
    },
    KnownDoc {
        slug: "security-architecture",
        title: "Security Architecture",
        description: "Certificates, single sign-on, secrets and network policies",
        group: ARCHITECTURE,
    },
    KnownDoc {
        slug: "deployment-automation",
        title: "Deployment Automation",
        description: "The deploy script and what each of its phases does",
        group: OPERATIONS,
    },
    KnownDoc {
        slug: "terraform-infrastructure",
        title: "Terraform Infrastructure",
        description: "Provisioning the Harvester and Rancher infrastructure as code",
        group: OPERATIONS,
    },
    KnownDoc {
        slug: "services-reference",
        title: "Services Reference",
        description: "Configuration of every platform service",
        group: OPERATIONS,
    },
    KnownDoc {
        slug: "monitoring-observability",
        title: "Monitoring & Observability",
        description: "Metrics, dashboards, logs and alerts",
        group: OPERATIONS,
    },
    KnownDoc {
        slug: "golden-image-cicd",
        title: "Golden Image CI/CD",
        description: "Building the hardened base images",
        group: CI_CD,
    },
    KnownDoc {
        slug: "custom-operators",
        title: "Custom Operators",
        description: "The platform's own operators and portal",
        group: CI_CD,
    },
    KnownDoc {
        slug: "flow-charts",
        title: "Flow Charts",
        description: "Diagrams of the deployment and of daily operations",
        group: ARCHITECTURE,
    },
];

/// Sidebar groups in the bash phase's order (ours: `More` for documents it did not know).
const SIDEBAR_GROUPS: &[&str] = &[ARCHITECTURE, OPERATIONS, CI_CD, MORE];
/// Within a group, the sidebar's order (it differs from the landing page's for `flow-charts`).
const SIDEBAR_ORDER: &[&str] = &[
    "system-architecture",
    "security-architecture",
    "flow-charts",
    "deployment-automation",
    "terraform-infrastructure",
    "services-reference",
    "monitoring-observability",
    "golden-image-cicd",
    "custom-operators",
];

const WELCOME: &str = "Standard operating procedures of the platform's engineering team: \
architecture, operations, troubleshooting and security of the RKE2 cluster platform. These pages \
are published from the platform repository's engineering docs by cicd-buildout (phase 12b); \
change them there, since a change made here is replaced by the next deploy.";
const TROUBLESHOOTING_TITLE: &str = "Troubleshooting SOP";
const TROUBLESHOOTING_DESCRIPTION: &str =
    "On-call runbooks, disaster recovery and day-2 operations";

/// The slug GitLab gives a page created with `title`: the title, spaces made `-` (as GitLab's
/// wiki URLs show them; the doc's examples have none). Our titles are file stems, so (without
/// spaces) slug and title are the same.
pub fn slug_of_title(title: &str) -> String {
    title.replace(' ', "-")
}

/// Every page the docs produce, by slug. `docs` maps file names to their text; files other than
/// `*.md` are ignored.
pub fn render(docs: &BTreeMap<String, String>) -> BTreeMap<String, Page> {
    let mut pages = BTreeMap::new();
    let mut documents = Vec::new();
    for (file, text) in docs {
        let Some(stem) = file.strip_suffix(".md").filter(|s| !s.is_empty()) else {
            continue;
        };
        if file == TROUBLESHOOTING_FILE {
            continue;
        }
        let slug = slug_of_title(stem);
        documents.push(Document {
            slug: slug.clone(),
            title: first_heading(text).unwrap_or_else(|| stem.to_owned()),
            file: file.clone(),
        });
        pages.insert(
            slug,
            Page {
                title: stem.to_owned(),
                content: text.clone(),
            },
        );
    }
    let sections = match docs.get(TROUBLESHOOTING_FILE) {
        Some(text) => {
            let split = split_troubleshooting(text);
            pages.insert(
                TROUBLESHOOTING_INDEX.to_owned(),
                page(TROUBLESHOOTING_INDEX, index_page(&split)),
            );
            for section in &split.sections {
                pages.insert(section.slug(), page(&section.slug(), section.page()));
            }
            Some(split.sections)
        }
        None => None,
    };
    // Generated pages win over a docs file of the same name, as in the bash phase.
    documents.retain(|d| {
        d.slug != HOME && d.slug != SIDEBAR && !generated_from(sections.as_deref(), &d.slug)
    });
    pages.insert(
        HOME.to_owned(),
        page(HOME, home_page(&documents, sections.is_some())),
    );
    pages.insert(
        SIDEBAR.to_owned(),
        page(SIDEBAR, sidebar_page(&documents, sections.as_deref())),
    );
    for page in pages.values_mut() {
        page.content = strip_md_links(&page.content);
    }
    pages
}

fn page(slug: &str, content: String) -> Page {
    Page {
        title: slug.to_owned(),
        content,
    }
}

/// Whether `slug` is one of the troubleshooting sub-pages.
fn generated_from(sections: Option<&[Section<'_>]>, slug: &str) -> bool {
    sections.is_some_and(|s| s.iter().any(|section| section.slug() == slug))
}

/// A published document, as the landing page and the sidebar list it.
struct Document {
    slug: String,
    /// The document's first `# ` heading (for documents the fixed table does not know).
    title: String,
    file: String,
}

/// `](name.md)` → `](name)` and `](name.md#anchor)` → `](name#anchor)` when `name` is made of
/// letters, digits, `_` and `-` only: links between sibling docs become links between wiki pages;
/// relative paths such as `../x.md` stay as they are.
pub fn strip_md_links(text: &str) -> String {
    static LINK: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\]\(([A-Za-z0-9_-]+)\.md(#[^)]+)?\)").expect("a valid pattern")
    });
    LINK.replace_all(text, "](${1}${2})").into_owned()
}

/// The text of the first `# ` heading outside code fences.
fn first_heading(text: &str) -> Option<String> {
    let mut fence = Fence::default();
    for line in text.split_terminator('\n') {
        let outside = !fence.inside();
        fence.feed(line);
        if outside {
            if let Some(title) = line.strip_prefix("# ") {
                let title = title.trim();
                if !title.is_empty() {
                    return Some(title.to_owned());
                }
            }
        }
    }
    None
}

/// Tracks fenced code blocks (`CommonMark`: a line of three or more backticks or tildes, indented
/// at most three spaces, opens one; a line of at least as many of the same character closes it).
#[derive(Default)]
struct Fence {
    open: Option<(u8, usize)>,
}

impl Fence {
    fn inside(&self) -> bool {
        self.open.is_some()
    }

    fn feed(&mut self, line: &str) {
        let rest = line.trim_start_matches(' ');
        if line.len() - rest.len() > 3 {
            return;
        }
        let Some(&marker @ (b'`' | b'~')) = rest.as_bytes().first() else {
            return;
        };
        let run = rest.bytes().take_while(|b| *b == marker).count();
        if run < 3 {
            return;
        }
        let after = &rest[run..];
        match self.open {
            None => {
                // A backtick fence's info string cannot contain a backtick (inline code instead).
                if marker == b'`' && after.contains('`') {
                    return;
                }
                self.open = Some((marker, run));
            }
            Some((open, len)) => {
                if open == marker && run >= len && after.trim().is_empty() {
                    self.open = None;
                }
            }
        }
    }
}

/// One numbered section of the troubleshooting SOP.
struct Section<'a> {
    /// The number as written (`1`, `11`).
    number: &'a str,
    /// The heading's text after `## N. `.
    title: &'a str,
    /// The heading line and the body up to the next numbered heading.
    lines: Vec<&'a str>,
}

impl Section<'_> {
    /// `troubleshooting-NN-<slug>`: the number padded to two digits (so pages sort in order),
    /// the title lower-cased with each run of other characters than `a-z0-9` made one `-`.
    fn slug(&self) -> String {
        let number = self
            .number
            .parse::<u64>()
            .map_or_else(|_| self.number.to_owned(), |n| format!("{n:02}"));
        format!("troubleshooting-{number}-{}", section_slug(self.title))
    }

    fn page(&self) -> String {
        let mut out = format!("{BREADCRUMB}\n\n");
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Lower-case ASCII letters and digits, every run of anything else one `-`, none at the ends.
pub fn section_slug(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    let mut gap = false;
    for c in title.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out
}

/// `## <digits>.` at the start of a line: the number and the title (the rest after `## N. `, or
/// the whole line when no space follows the dot, as the bash phase's `sed` leaves it).
fn numbered_heading(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("## ")?;
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || rest.as_bytes().get(digits) != Some(&b'.') {
        return None;
    }
    let title = rest[digits + 1..].strip_prefix(' ').unwrap_or(line);
    Some((&rest[..digits], title))
}

/// The troubleshooting SOP in its three parts.
struct Split<'a> {
    /// Everything before the first numbered section (title, introduction, table of contents).
    intro: Vec<&'a str>,
    sections: Vec<Section<'a>>,
    /// `## Related Documentation` to the end of the file.
    related: Vec<&'a str>,
}

fn split_troubleshooting(text: &str) -> Split<'_> {
    enum Part {
        Intro,
        Section,
        Related,
    }
    let mut split = Split {
        intro: Vec::new(),
        sections: Vec::new(),
        related: Vec::new(),
    };
    let mut part = Part::Intro;
    let mut fence = Fence::default();
    for line in text.split_terminator('\n') {
        let outside = !fence.inside();
        fence.feed(line);
        if outside && !matches!(part, Part::Related) {
            if let Some((number, title)) = numbered_heading(line) {
                split.sections.push(Section {
                    number,
                    title,
                    lines: vec![line],
                });
                part = Part::Section;
                continue;
            }
            // The closing section ends the last numbered one and runs to the end of the file.
            if line.starts_with(RELATED_HEADING) {
                part = Part::Related;
            }
        }
        match part {
            Part::Intro => split.intro.push(line),
            Part::Section => {
                if let Some(section) = split.sections.last_mut() {
                    section.lines.push(line);
                }
            }
            Part::Related => split.related.push(line),
        }
    }
    split
}

/// The introduction, a `## Sections` list linking every sub-page, and the related documents.
fn index_page(split: &Split<'_>) -> String {
    let mut out = String::new();
    for line in &split.intro {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("\n---\n\n## Sections\n\n");
    for section in &split.sections {
        out.push_str(&format!(
            "- [{}. {}]({})\n",
            section.number,
            section.title,
            section.slug()
        ));
    }
    if !split.related.is_empty() {
        out.push_str("\n---\n\n");
        out.push_str(split.related.join("\n").trim_end_matches('\n'));
    }
    out.push('\n');
    out
}

fn known(slug: &str) -> Option<&'static KnownDoc> {
    KNOWN_DOCS.iter().find(|d| d.slug == slug)
}

/// The landing page: a welcome and a table of the published documents (the known ones in the
/// bash phase's order, then the others), the troubleshooting SOP last and in bold.
fn home_page(documents: &[Document], troubleshooting: bool) -> String {
    let mut out = format!(
        "{HOME_HEADING}\n\n{WELCOME}\n\n## Quick Links\n\n| Document | Description |\n|----------|-------------|\n"
    );
    for doc in KNOWN_DOCS {
        if documents.iter().any(|d| d.slug == doc.slug) {
            out.push_str(&format!(
                "| [{}]({}) | {} |\n",
                doc.title, doc.slug, doc.description
            ));
        }
    }
    for doc in documents.iter().filter(|d| known(&d.slug).is_none()) {
        out.push_str(&format!(
            "| [{}]({}) | `{}` |\n",
            doc.title, doc.slug, doc.file
        ));
    }
    if troubleshooting {
        out.push_str(&format!(
            "| **[{TROUBLESHOOTING_TITLE}]({TROUBLESHOOTING_INDEX})** | **{TROUBLESHOOTING_DESCRIPTION}** |\n"
        ));
    }
    out
}

/// The navigation: Home, the documents by group, and the troubleshooting index with one indented
/// entry per section. Groups without a published document are left out.
fn sidebar_page(documents: &[Document], sections: Option<&[Section<'_>]>) -> String {
    let mut out = format!("**[{HOME}]({HOME})**\n\n---\n");
    for group in SIDEBAR_GROUPS {
        let mut entries: Vec<String> = SIDEBAR_ORDER
            .iter()
            .filter_map(|slug| known(slug))
            .filter(|doc| doc.group == *group && documents.iter().any(|d| d.slug == doc.slug))
            .map(|doc| format!("- [{}]({})\n", doc.title, doc.slug))
            .collect();
        if *group == MORE {
            entries.extend(
                documents
                    .iter()
                    .filter(|d| known(&d.slug).is_none())
                    .map(|d| format!("- [{}]({})\n", d.title, d.slug)),
            );
        }
        if !entries.is_empty() {
            out.push_str(&format!("\n**{group}**\n"));
            out.push_str(&entries.concat());
        }
    }
    if let Some(sections) = sections {
        out.push_str(&format!(
            "\n**Troubleshooting**\n- [Troubleshooting Index]({TROUBLESHOOTING_INDEX})\n"
        ));
        for section in sections {
            out.push_str(&format!(
                "  - [{}. {}]({})\n",
                section.number,
                section.title,
                section.slug()
            ));
        }
    }
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
