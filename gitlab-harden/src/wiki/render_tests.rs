//! Unit tests of the page rendering. Inputs are written from the research note's description of
//! the bash phase 12b (docs/research/upstream-bash-phases.md section 2); one test reads the platform's
//! real `docs/engineering` from a local mirror when there is one.

use super::*;

fn docs(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect()
}

/// A troubleshooting SOP as the note describes it: title, intro and table of contents, numbered
/// sections, a code fence holding a numbered heading, and `## Related Documentation` at the end.
const TROUBLESHOOTING: &str = "\
# Troubleshooting SOP

Start at section 1.

## Table of Contents

1. [General](#1-general)

## 1. General Diagnostic Flowchart

Look at the pods first.

```bash
## 9. Not a section: a comment inside a fence
kubectl get pods -A
```

## 2. TLS/Certificate Issues

See [security](security-architecture.md#pki) and [vault](../vault-ha.md).

---

## Related Documentation

- [System Architecture](system-architecture.md)


";

#[test]
fn plain_docs_keep_their_stem_and_other_files_are_ignored() {
    let pages = render(&docs(&[
        ("system-architecture.md", "# System Architecture\n"),
        ("notes.txt", "not markdown"),
        ("README", "no extension"),
    ]));
    assert_eq!(
        pages.keys().collect::<Vec<_>>(),
        ["Home", "_sidebar", "system-architecture"]
    );
    let page = &pages["system-architecture"];
    assert_eq!(page.title, "system-architecture", "title = slug");
    assert_eq!(page.content, "# System Architecture\n", "copied as it is");
}

#[test]
fn the_troubleshooting_sop_splits_at_numbered_headings_outside_fences() {
    let pages = render(&docs(&[(TROUBLESHOOTING_FILE, TROUBLESHOOTING)]));
    assert_eq!(
        pages.keys().collect::<Vec<_>>(),
        [
            "Home",
            "_sidebar",
            "troubleshooting-01-general-diagnostic-flowchart",
            "troubleshooting-02-tls-certificate-issues",
            "troubleshooting-sop",
        ],
        "the heading inside the fence does not split"
    );
    assert_eq!(
        pages["troubleshooting-01-general-diagnostic-flowchart"].content,
        "\
> **[← Back to Troubleshooting Index](troubleshooting-sop)**

## 1. General Diagnostic Flowchart

Look at the pods first.

```bash
## 9. Not a section: a comment inside a fence
kubectl get pods -A
```

"
    );
    assert_eq!(
        pages["troubleshooting-02-tls-certificate-issues"].content,
        "\
> **[← Back to Troubleshooting Index](troubleshooting-sop)**

## 2. TLS/Certificate Issues

See [security](security-architecture#pki) and [vault](../vault-ha.md).

---

",
        "the section ends at Related Documentation; sibling links lose .md, relative paths stay"
    );
    assert_eq!(
        pages[TROUBLESHOOTING_INDEX].content,
        "\
# Troubleshooting SOP

Start at section 1.

## Table of Contents

1. [General](#1-general)


---

## Sections

- [1. General Diagnostic Flowchart](troubleshooting-01-general-diagnostic-flowchart)
- [2. TLS/Certificate Issues](troubleshooting-02-tls-certificate-issues)

---

## Related Documentation

- [System Architecture](system-architecture)
",
        "intro, the section list, then Related Documentation without its trailing blank lines"
    );
}

#[test]
fn an_index_without_related_documentation_ends_after_the_list() {
    let pages = render(&docs(&[(
        TROUBLESHOOTING_FILE,
        "# T\n## 3. Disk Full\nclean up\n## 11. Day-2 Operations Procedures\n",
    )]));
    assert_eq!(
        pages[TROUBLESHOOTING_INDEX].content,
        "# T\n\n---\n\n## Sections\n\n- [3. Disk Full](troubleshooting-03-disk-full)\n- [11. Day-2 Operations Procedures](troubleshooting-11-day-2-operations-procedures)\n\n"
    );
    assert_eq!(
        pages["troubleshooting-11-day-2-operations-procedures"].content,
        format!("{BREADCRUMB}\n\n## 11. Day-2 Operations Procedures\n")
    );
}

#[test]
fn section_slugs_follow_the_bash_rule() {
    for (title, slug) in [
        ("TLS/Certificate Issues", "tls-certificate-issues"),
        ("Day-2 Operations Procedures", "day-2-operations-procedures"),
        ("  Vault: Sealed!  ", "vault-sealed"),
        ("Ünïcode & more", "n-code-more"),
    ] {
        assert_eq!(section_slug(title), slug, "{title}");
    }
    assert_eq!(numbered_heading("## 12. Foo"), Some(("12", "Foo")));
    assert_eq!(numbered_heading("## 3.Foo"), Some(("3", "## 3.Foo")));
    assert_eq!(numbered_heading("## Table of Contents"), None);
    assert_eq!(numbered_heading("### 1. Deeper"), None);
    assert_eq!(numbered_heading("## 1 No dot"), None);
}

#[test]
fn only_links_to_sibling_md_files_lose_the_extension() {
    let text = "[a](system-architecture.md) [b](flow_charts.md#step-2) [c](../vault-ha.md) \
                [d](./x.md) [e](../../services/monitoring-stack/docs/tls-integration-guide.md) \
                [f](https://example.com/page.md) [g](Home.md)";
    assert_eq!(
        strip_md_links(text),
        "[a](system-architecture) [b](flow_charts#step-2) [c](../vault-ha.md) \
         [d](./x.md) [e](../../services/monitoring-stack/docs/tls-integration-guide.md) \
         [f](https://example.com/page.md) [g](Home)"
    );
}

#[test]
fn without_a_troubleshooting_sop_there_is_no_index_and_no_sub_pages() {
    let pages = render(&docs(&[
        ("flow-charts.md", "# Flow\n"),
        (
            "runbook.md",
            "intro\n```\n# not a title\n```\n# Runbook For Disks\n",
        ),
    ]));
    assert_eq!(
        pages.keys().collect::<Vec<_>>(),
        ["Home", "_sidebar", "flow-charts", "runbook"]
    );
    let home = &pages[HOME].content;
    assert!(!home.contains("(troubleshooting-sop)"), "{home}");
    assert!(
        home.contains("| [Flow Charts](flow-charts) | Diagrams of the deployment and of daily operations |\n| [Runbook For Disks](runbook) | `runbook.md` |\n"),
        "known documents first, then others by their first heading outside fences:\n{home}"
    );
    assert_eq!(
        pages[SIDEBAR].content,
        "**[Home](Home)**\n\n---\n\n**Architecture**\n- [Flow Charts](flow-charts)\n\n**More**\n- [Runbook For Disks](runbook)\n"
    );
}

#[test]
fn home_and_sidebar_list_the_platform_docs_in_the_bash_order() {
    let mut files: BTreeMap<String, String> = KNOWN_DOCS
        .iter()
        .map(|d| (format!("{}.md", d.slug), "text\n".to_owned()))
        .collect();
    files.insert(TROUBLESHOOTING_FILE.to_owned(), TROUBLESHOOTING.to_owned());
    let pages = render(&files);
    let home = &pages[HOME].content;
    assert!(home.starts_with("# Engineering SOPs\n\n"), "{home}");
    let rows: Vec<&str> = home
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("]("))
        .map(|l| {
            let start = l.find("](").unwrap() + 2;
            &l[start..start + l[start..].find(')').unwrap()]
        })
        .collect();
    assert_eq!(
        rows,
        [
            "system-architecture",
            "security-architecture",
            "deployment-automation",
            "terraform-infrastructure",
            "services-reference",
            "monitoring-observability",
            "golden-image-cicd",
            "custom-operators",
            "flow-charts",
            "troubleshooting-sop",
        ]
    );
    assert!(home.ends_with(
        "| **[Troubleshooting SOP](troubleshooting-sop)** | **On-call runbooks, disaster recovery and day-2 operations** |\n"
    ));
    assert_eq!(
        pages[SIDEBAR].content,
        "\
**[Home](Home)**

---

**Architecture**
- [System Architecture](system-architecture)
- [Security Architecture](security-architecture)
- [Flow Charts](flow-charts)

**Operations**
- [Deployment Automation](deployment-automation)
- [Terraform Infrastructure](terraform-infrastructure)
- [Services Reference](services-reference)
- [Monitoring & Observability](monitoring-observability)

**CI/CD**
- [Golden Image CI/CD](golden-image-cicd)
- [Custom Operators](custom-operators)

**Troubleshooting**
- [Troubleshooting Index](troubleshooting-sop)
  - [1. General Diagnostic Flowchart](troubleshooting-01-general-diagnostic-flowchart)
  - [2. TLS/Certificate Issues](troubleshooting-02-tls-certificate-issues)
"
    );
}

#[test]
fn generated_pages_win_over_docs_files_of_the_same_name() {
    let pages = render(&docs(&[
        ("Home.md", "my own home\n"),
        ("_sidebar.md", "x\n"),
    ]));
    assert!(pages[HOME].content.starts_with(HOME_HEADING));
    assert!(pages[SIDEBAR].content.starts_with("**[Home](Home)**"));
    assert!(
        !pages[HOME].content.contains("(Home)"),
        "not listed as a document"
    );
}

/// The platform's real `docs/engineering` (snapshot c352bb5 described in the research note), read
/// from a local bare mirror (`SOP_WIKI_UPSTREAM_MIRROR`, default the `fetch` tool's location);
/// skipped when there is none. Its files are never copied into this repository.
#[test]
fn the_platform_docs_render_to_the_wiki_the_note_describes() {
    let mirror = std::env::var("SOP_WIKI_UPSTREAM_MIRROR")
        .unwrap_or_else(|_| "/work/.mirror/derhornspieler+harvester-rke2-platform/repo".to_owned());
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&mirror)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(listing) = git(&["ls-tree", "--name-only", "HEAD", "docs/engineering/"]) else {
        eprintln!("no mirror of the platform repository at {mirror}: skipped");
        return;
    };
    let files: BTreeMap<String, String> = listing
        .lines()
        .map(|path| {
            let text = git(&["show", &format!("HEAD:{path}")]).expect("a listed file");
            (path.rsplit('/').next().unwrap().to_owned(), text)
        })
        .collect();
    assert_eq!(files.len(), 10, "{:?}", files.keys());
    let pages = render(&files);
    let sub_pages: Vec<&String> = pages
        .keys()
        .filter(|s| s.starts_with("troubleshooting-") && s.as_str() != TROUBLESHOOTING_INDEX)
        .collect();
    assert_eq!(sub_pages.len(), 11, "sections 1–11: {sub_pages:?}");
    assert_eq!(
        sub_pages.first().map(|s| s.as_str()),
        Some("troubleshooting-01-general-diagnostic-flowchart")
    );
    assert_eq!(
        sub_pages.last().map(|s| s.as_str()),
        Some("troubleshooting-11-day-2-operations-procedures")
    );
    assert!(pages.contains_key("troubleshooting-04-tls-certificate-issues"));
    assert_eq!(
        pages.len(),
        9 + 1 + 11 + 2,
        "docs, index, sub-pages, Home, _sidebar"
    );
    // Nothing is lost or duplicated: intro, sections and Related Documentation are the file.
    let source = &files[TROUBLESHOOTING_FILE];
    let split = split_troubleshooting(source);
    let rejoined: Vec<&str> = split
        .intro
        .iter()
        .chain(split.sections.iter().flat_map(|s| s.lines.iter()))
        .chain(split.related.iter())
        .copied()
        .collect();
    assert_eq!(rejoined, source.split_terminator('\n').collect::<Vec<_>>());
    let index = &pages[TROUBLESHOOTING_INDEX].content;
    let list = index
        .split("\n## Sections\n\n")
        .nth(1)
        .and_then(|rest| rest.split("\n---\n").next())
        .expect("a section list before Related Documentation");
    assert_eq!(list.lines().count(), 11, "{list}");
    assert!(index.contains("\n## Related Documentation\n"), "{index}");
    for slug in &sub_pages {
        assert!(pages[*slug].content.starts_with(BREADCRUMB), "{slug}");
        assert!(!pages[*slug].content.contains(RELATED_HEADING), "{slug}");
    }
    for (slug, page) in &pages {
        assert!(
            !page.content.contains("](system-architecture.md"),
            "{slug}: sibling links rewritten"
        );
    }
    assert!(
        index.contains("](../vault-ha.md)"),
        "relative links stay as the bash phase leaves them"
    );
    let sidebar = &pages[SIDEBAR].content;
    assert_eq!(sidebar.matches("\n  - [").count(), 11, "{sidebar}");
}
