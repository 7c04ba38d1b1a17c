//! What the docs test reads from `docs/cicd/` (issue 20): the commands of its code blocks and the
//! settings and repository paths its text names.
//!
//! Conventions (docs/cicd/README.md states them for writers):
//! - a block fenced as `sh` is run, line by line, against the sandbox (phases 12–18 applied, two
//!   services onboarded) and must exit 0;
//! - a block fenced as `sh live` needs a live cluster and is not run, but each of its lines that
//!   starts with one of this project's binaries is run with `--help` appended: its subcommand and
//!   flags must exist;
//! - a setting in backticks (`` `GITLAB_URL` ``) must be defined (common/src/env.rs, the CI
//!   library's variables, or [`OTHER_SETTINGS`]); a repository path in backticks must exist.

use std::collections::BTreeSet;

/// This project's binaries: a line starting with one of them is checked against its CLI.
pub const BINARIES: &[&str] = &[
    "gitlab-harden",
    "sop-wiki",
    "vault-cicd",
    "ci-templates",
    "argo-delivery",
    "security-setup",
    "obs-setup",
    "demo-apps",
    "onboard-service",
    "feature-flags",
    "cicd-preflight",
    "cicd-readiness",
];

/// Settings read by something other than the phases or the library: the feature-flag sidecar and
/// auditor, and the services' own environment.
pub const OTHER_SETTINGS: &[&str] = &[
    "MATTERMOST_WEBHOOK",
    "FLAGS_URL",
    "PORT",
    "VAULT_TOKEN",
    "VAULT_TOKEN_FILE",
    "MAX_FLAG_AGE_DAYS",
    "FLAGS_SERVICE",
    "FLAGS_LISTEN",
    "FLAGS_REFRESH_SECONDS",
];

/// Folders a path in backticks must start with to be checked.
pub const CHECKED_ROOTS: &[&str] = &[
    "scripts/",
    "docs/",
    "service-template/",
    "ci-templates/",
    "argo-delivery/",
    "common/",
    "services/",
    "onboard-service/",
    "operate/",
    "gitlab-harden/",
    "vault-cicd/",
    "security-setup/",
    "obs-setup/",
    "demo-apps/",
];

/// How a block is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `sh`: run.
    Run,
    /// `sh live`: only this project's binaries, with `--help`.
    Live,
}

/// One command of a docs file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocCommand {
    pub file: String,
    /// 1-based line of the command's first line.
    pub line: usize,
    pub kind: BlockKind,
    pub text: String,
}

/// The commands of the `sh` and `sh live` blocks of one Markdown file: comments and blank lines
/// dropped, lines ending in `\` joined.
pub fn commands(file: &str, markdown: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut kind: Option<Option<BlockKind>> = None;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            kind = match kind {
                Some(_) => None,
                None => Some(
                    match info.split_whitespace().collect::<Vec<_>>().as_slice() {
                        ["sh" | "bash" | "shell"] => Some(BlockKind::Run),
                        ["sh" | "bash" | "shell", "live"] => Some(BlockKind::Live),
                        _ => None,
                    },
                ),
            };
            continue;
        }
        let Some(Some(block)) = kind else { continue };
        if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((index + 1, String::new()));
        if let Some(head) = trimmed.strip_suffix('\\') {
            text.push_str(head.trim_end());
            text.push(' ');
            pending = Some((start, text));
            continue;
        }
        text.push_str(trimmed);
        out.push(DocCommand {
            file: file.to_owned(),
            line: start,
            kind: block,
            text,
        });
    }
    out
}

/// The `--help` check of a live command: its first simple command, if it runs one of
/// [`BINARIES`] (`None` for kubectl, vault …).
pub fn help_check(command: &str) -> Option<String> {
    let first = command
        .split(['|', ';'])
        .next()
        .unwrap_or_default()
        .split("&&")
        .next()
        .unwrap_or_default()
        .trim();
    let program = first.split_whitespace().next()?;
    BINARIES
        .contains(&program)
        .then(|| format!("{first} --help"))
}

/// The spans of a Markdown text in single backticks (outside fenced blocks).
fn inline_code(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
            out.push(code.to_owned());
        }
    }
    out
}

/// Settings named in backticks: `NAME` alone, or `NAME=value`.
pub fn settings(markdown: &str) -> BTreeSet<String> {
    inline_code(markdown)
        .into_iter()
        .filter_map(|code| {
            let name = code.split('=').next().unwrap_or_default().trim().to_owned();
            let looks_like_setting = name.len() >= 3
                && name.contains('_')
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            looks_like_setting.then_some(name)
        })
        .collect()
}

/// Repository paths named in backticks under [`CHECKED_ROOTS`] (placeholders and globs skipped).
pub fn paths(markdown: &str) -> BTreeSet<String> {
    inline_code(markdown)
        .into_iter()
        .filter_map(|code| {
            let path = code
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches([',', '.', ':', ')'])
                .to_owned();
            let checked = CHECKED_ROOTS.iter().any(|r| path.starts_with(r))
                && !path.contains(['<', '*', '{', '$']);
            checked.then(|| {
                path.split_once('#')
                    .map_or(path.clone(), |(p, _)| p.to_owned())
            })
        })
        .collect()
}

/// Names `pub const X: &str = "NAME";` defines in common/src/env.rs.
pub fn defined_settings(env_rs: &str) -> BTreeSet<String> {
    env_rs
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const ")?;
            let value = rest.split_once("= \"")?.1;
            Some(value.split('"').next()?.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Guide\nSet `GITLAB_URL` and `NOT_A_SETTING=1`; see `scripts/deploy-cluster.sh` and `docs/gone.md#x`.\nNot code: GITLAB_URL. `<service>/x` `kubectl` `services/<name>/x`\n\n```sh\n# a comment\nonboard-service billing-api --lang go check\nargo-delivery plan \\\n  --output json\n```\n\n```sh live\nkubectl -n argocd get applications\nvault-cicd doctor | tee out.txt\n```\n\n```yaml\nkey: value\n```\n";

    #[test]
    fn commands_are_read_by_kind_with_continuations_joined() {
        let found = commands("g.md", DOC);
        let texts: Vec<(&str, BlockKind, usize)> = found
            .iter()
            .map(|c| (c.text.as_str(), c.kind, c.line))
            .collect();
        assert_eq!(
            texts,
            [
                (
                    "onboard-service billing-api --lang go check",
                    BlockKind::Run,
                    7
                ),
                ("argo-delivery plan --output json", BlockKind::Run, 8),
                ("kubectl -n argocd get applications", BlockKind::Live, 13),
                ("vault-cicd doctor | tee out.txt", BlockKind::Live, 14),
            ]
        );
        assert_eq!(help_check(&found[2].text), None);
        assert_eq!(
            help_check(&found[3].text).as_deref(),
            Some("vault-cicd doctor --help")
        );
    }

    #[test]
    fn settings_and_paths_in_backticks_are_found() {
        assert_eq!(
            settings(DOC).into_iter().collect::<Vec<_>>(),
            ["GITLAB_URL", "NOT_A_SETTING"]
        );
        assert_eq!(
            paths(DOC).into_iter().collect::<Vec<_>>(),
            ["docs/gone.md", "scripts/deploy-cluster.sh"]
        );
        let defined =
            defined_settings("pub const GITLAB_URL: &str = \"GITLAB_URL\";\nconst X: u8 = 1;\n");
        assert!(defined.contains("GITLAB_URL") && defined.len() == 1);
    }
}
