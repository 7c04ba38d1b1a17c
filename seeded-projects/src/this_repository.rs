//! This repository as a seeded project: phase 17 pushes cicd-buildout itself to
//! `platform_services/cicd-buildout`, whose release pipeline builds the image of the daily
//! readiness report (`cicd-readiness`, the root `Dockerfile`) and whose `deploy/` tree Argo CD
//! deploys (docs/adr/0012).
//!
//! Unlike the services (embedded at build time by build.rs), the files are read at run time from a
//! checkout's `HEAD` commit (`git ls-tree`, `git cat-file`): embedding the whole workspace would
//! rebuild the phases on every change anywhere, and the working tree may hold uncommitted edits.
//! The checkout is `CICD_SOURCE_DIR`, by default the one the binaries were built from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The project's path in the platform group, and the image its release pipeline pushes.
pub const NAME: &str = "cicd-buildout";

/// The release tag the readiness `CronJob` pins: the workspace's version.
pub fn release_tag() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// The checkout the binaries were built from (this crate's parent folder).
pub fn built_from() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The checkout to seed: `CICD_SOURCE_DIR` when set, else [`built_from`].
pub fn source_dir(configured: Option<&str>) -> PathBuf {
    configured
        .filter(|s| !s.is_empty())
        .map_or_else(built_from, PathBuf::from)
}

fn git(root: &Path, args: &[&str], fix: &str) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "running git {} in {}: {fix}",
                args.join(" "),
                root.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "git {} in {} failed ({}): {}; {fix}",
            args.join(" "),
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Every file of the checkout's `HEAD` commit: what is pushed is what was committed, never an
/// operator's uncommitted edits (those are listed by [`uncommitted`]).
pub fn files(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let fix = format!(
        "phase 17 seeds this repository from a git checkout: run it from one, or set {} to one",
        common::env::CICD_SOURCE_DIR
    );
    let listing = git(root, &["ls-tree", "-r", "-z", "--full-tree", "HEAD"], &fix)?;
    let listing = String::from_utf8(listing)
        .with_context(|| format!("git ls-tree in {}: a path is not UTF-8", root.display()))?;
    // `<mode> <type> <blob>\t<path>`; submodules (`commit`) are not files.
    let entries: Vec<(&str, &str)> = listing
        .split('\0')
        .filter_map(|entry| {
            let (meta, path) = entry.split_once('\t')?;
            let mut parts = meta.split(' ');
            let (_mode, kind, blob) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "blob").then_some((blob, path))
        })
        .collect();
    let mut batch = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["cat-file", "--batch"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running git cat-file in {}: {fix}", root.display()))?;
    let mut stdin = batch.stdin.take().context("git cat-file's stdin")?;
    let ids: String = entries
        .iter()
        .map(|(blob, _)| format!("{blob}\n"))
        .collect();
    // Written from a thread: git answers while it reads, and both pipes have a bounded buffer.
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, ids.as_bytes()));
    let out = batch
        .wait_with_output()
        .with_context(|| format!("git cat-file in {}", root.display()))?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing to git cat-file panicked"))?
        .with_context(|| format!("writing to git cat-file in {}", root.display()))?;
    let mut rest = out.stdout.as_slice();
    let mut files = BTreeMap::new();
    for (blob, path) in entries {
        // `<blob> blob <size>\n<content>\n`
        let header_end = rest
            .iter()
            .position(|b| *b == b'\n')
            .with_context(|| format!("git cat-file: no answer for {path}"))?;
        let header = std::str::from_utf8(&rest[..header_end]).unwrap_or_default();
        let size: usize = header
            .strip_prefix(&format!("{blob} blob "))
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("git cat-file answered {header:?} for {path}"))?;
        let content = rest
            .get(header_end + 1..header_end + 1 + size)
            .with_context(|| format!("git cat-file: {path} is cut short"))?;
        let text = String::from_utf8(content.to_vec()).with_context(|| {
            format!(
                "{path} is not UTF-8 text: phase 17 pushes this repository's text files only (GitLab's commits API)"
            )
        })?;
        files.insert(path.to_owned(), text);
        rest = rest.get(header_end + 2 + size..).unwrap_or_default();
    }
    for required in ["Cargo.toml", "Cargo.lock", "Dockerfile", ".gitlab-ci.yml"] {
        if !files.contains_key(required) {
            bail!(
                "{} has no committed {required}: it is not a cicd-buildout checkout ({fix})",
                root.display()
            );
        }
    }
    Ok(files)
}

/// Tracked files the working tree changed since `HEAD` (not pushed: commit them first).
pub fn uncommitted(root: &Path) -> Vec<String> {
    git(
        root,
        &["status", "--porcelain", "--untracked-files=no", "-z"],
        "",
    )
    .map(|out| {
        String::from_utf8_lossy(&out)
            .split('\0')
            .filter(|l| l.len() > 3)
            .map(|l| l[3..].to_owned())
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_committed_files_of_this_checkout() {
        let root = built_from();
        let files = files(&root).unwrap();
        // Byte for byte what git holds at HEAD.
        let lock = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["show", "HEAD:Cargo.lock"])
            .output()
            .unwrap();
        assert_eq!(files["Cargo.lock"].as_bytes(), lock.stdout.as_slice());
        let listed = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["ls-tree", "-r", "--name-only", "HEAD"])
            .output()
            .unwrap();
        assert_eq!(
            files.len(),
            String::from_utf8_lossy(&listed.stdout).lines().count()
        );
        assert!(files.contains_key("operate/src/lib.rs"));
        assert!(files["Dockerfile"].contains("cicd-readiness"));
        // Build output and local state are not tracked.
        assert!(
            files
                .keys()
                .all(|p| !p.starts_with("target/") && !p.starts_with(".sandbox/"))
        );
        assert_eq!(release_tag(), format!("v{}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn a_folder_that_is_not_a_checkout_names_the_setting() {
        let dir = std::env::temp_dir().join(format!("not-a-checkout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = format!("{:#}", files(&dir).unwrap_err());
        assert!(e.contains("CICD_SOURCE_DIR"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
