//! This repository as a seeded project: phase 17 pushes cicd-buildout itself to
//! `platform_services/cicd-buildout`, whose release pipeline builds the image of the daily
//! readiness report (`cicd-readiness`, the root `Dockerfile`) and whose `deploy/` tree Argo CD
//! deploys (docs/adr/0012).
//!
//! Unlike the services (embedded at build time by build.rs), the files are read at run time from a
//! checkout, as git tracks them (`git ls-files`): embedding the whole workspace would rebuild the
//! phases on every change anywhere. The checkout is `CICD_SOURCE_DIR`, by default the one the
//! binaries were built from.

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

/// Every file git tracks in `root`, with its content as in the working tree (what the operator
/// runs is what is pushed). Tracked files deleted from the working tree are left out.
pub fn files(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let fix = format!(
        "phase 17 seeds this repository from a git checkout: run it from one, or set {} to one",
        common::env::CICD_SOURCE_DIR
    );
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z", "--cached"])
        .output()
        .with_context(|| format!("running git ls-files in {}: {fix}", root.display()))?;
    if !out.status.success() {
        bail!(
            "git ls-files in {} failed ({}): {}; {fix}",
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let listing = String::from_utf8(out.stdout)
        .with_context(|| format!("git ls-files in {}: a path is not UTF-8", root.display()))?;
    let mut files = BTreeMap::new();
    for path in listing.split('\0').filter(|p| !p.is_empty()) {
        let full = root.join(path);
        let bytes = match std::fs::read(&full) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", full.display())),
        };
        let text = String::from_utf8(bytes).with_context(|| {
            format!(
                "{} is not UTF-8 text: the GitLab commits API pushes text files only here",
                full.display()
            )
        })?;
        files.insert(path.to_owned(), text);
    }
    for required in ["Cargo.toml", "Cargo.lock", "Dockerfile", ".gitlab-ci.yml"] {
        if !files.contains_key(required) {
            bail!(
                "{} has no tracked {required}: it is not a cicd-buildout checkout ({fix})",
                root.display()
            );
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tracked_files_of_this_checkout() {
        let files = files(&built_from()).unwrap();
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
