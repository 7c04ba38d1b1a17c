//! The docs test (issue 20): every runnable command of `docs/cicd/` runs against this sandbox
//! (phases 12–18 applied, billing-api and web-shop onboarded) and writes nothing; every live
//! command of this project's binaries parses (`--help`); every setting and repository path the docs
//! name exists. Conventions: `system_tests::docs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use system_tests::docs::{self, BINARIES, BlockKind, OTHER_SETTINGS};

use crate::world::World;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("docs/cicd exists") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out.sort();
}

/// Settings the CI library's templates use (`$NAME`, `${NAME}`, `NAME:`).
fn library_variables() -> BTreeSet<String> {
    let mut text = String::new();
    for file in ci_templates::library::FILES {
        text.push_str(file.contents);
        text.push('\n');
    }
    upper_case_identifiers(&text)
}

/// Upper-case identifiers with an underscore (the library's variable names among them).
fn upper_case_identifiers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut current = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
            current.push(c);
        } else {
            if current.len() >= 3 && current.contains('_') {
                out.insert(std::mem::take(&mut current));
            }
            current.clear();
        }
    }
    out
}

pub fn every_command_and_reference_in_the_docs_holds(world: &World) {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root.join("docs/cicd"), &mut files);
    assert!(
        files.len() >= 27,
        "docs/cicd has {} Markdown files: 8 guides, 8 runbooks, 10 ADRs and more are expected",
        files.len()
    );

    // Every binary on PATH, built as the tests build them.
    let mut bin_dir = None;
    for bin in BINARIES {
        let package = match *bin {
            "sop-wiki" => "gitlab-harden",
            "cicd-preflight" | "cicd-readiness" => "operate",
            other => other,
        };
        let exe = sandbox::support::workspace_bin(package, bin, env!("CARGO_TARGET_TMPDIR"));
        bin_dir = exe.parent().map(Path::to_path_buf);
    }
    let bin_dir = bin_dir.expect("a binary directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let defined: BTreeSet<String> =
        docs::defined_settings(include_str!("../../../../common/src/env.rs"))
            .into_iter()
            .chain(library_variables())
            .chain(OTHER_SETTINGS.iter().map(|s| (*s).to_owned()))
            .collect();

    // What the runnable commands could write: stand-ins, Vault, and the catalog and Applications.
    let kube = world.kube();
    let watched: Vec<serde_json::Value> = crate::onboarding::SERVICES
        .iter()
        .flat_map(|(name, _, _)| crate::onboarding::objects_of(name))
        .collect();
    let kube_versions = || {
        world
            .rt
            .block_on(sandbox::support::resource_versions(&kube, &watched))
    };
    let writes = (
        world.standin_writes(),
        world.sandbox.vault_writes(),
        kube_versions(),
    );
    let mut failures = Vec::new();
    let (mut ran, mut parsed) = (0, 0);
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(file).expect("a docs file");
        for setting in docs::settings(&text) {
            if !defined.contains(&setting) {
                failures.push(format!("{rel}: `{setting}` is not a setting of this project (common/src/env.rs), of the CI library, or of the flag sidecar"));
            }
        }
        for referenced in docs::paths(&text) {
            let trimmed = referenced.trim_end_matches('/');
            if !root.join(trimmed).exists() {
                failures.push(format!(
                    "{rel}: `{referenced}` does not exist in the repository"
                ));
            }
        }
        for command in docs::commands(&rel, &text) {
            let (line, expect_help) = match command.kind {
                BlockKind::Run => (command.text.clone(), false),
                BlockKind::Live => match docs::help_check(&command.text) {
                    Some(line) => (line, true),
                    None => continue,
                },
            };
            let out = Command::new("bash")
                .args(["-c", &line])
                .current_dir(&root)
                .env("PATH", &path)
                .env(common::env::CICD_ENV_FILE, world.sandbox.env_file())
                .env("CICD_CRD_WAIT_SECS", "30")
                .output()
                .expect("bash");
            if expect_help {
                parsed += 1;
            } else {
                ran += 1;
            }
            if !out.status.success() {
                failures.push(format!(
                    "{}:{}: `{line}` exited {:?}: {}",
                    command.file,
                    command.line,
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or_default()
                ));
            }
        }
    }
    eprintln!(
        "    docs/cicd: {} files, {ran} commands run, {parsed} live commands parsed",
        files.len()
    );
    assert!(
        ran >= 8,
        "only {ran} runnable commands in docs/cicd: the guides show too little that can be checked"
    );
    assert!(
        failures.is_empty(),
        "{} problem(s) in docs/cicd:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        (
            world.standin_writes(),
            world.sandbox.vault_writes(),
            kube_versions()
        ),
        writes,
        "a runnable command of docs/cicd wrote: runnable blocks must only read"
    );
}
