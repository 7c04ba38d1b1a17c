//! The template library (plan §1.1), embedded in the binary: `library/templates/**` as data.
//! A test checks this list against the folder, so a new file cannot be forgotten.

/// Version of the library (`library/VERSION`, not the crate's): phase 14 tags the pushed commit
/// `v<VERSION>`, and the projects the phases seed pin `ref: v<VERSION>`. `library/RELEASES` records
/// each version's [`content_digest`]; a test keeps the two in step with the files.
pub const VERSION: &str = include_str!("../library/VERSION").trim_ascii();
/// `<version> <sha256>` per released version, oldest first (`#` comments).
pub const RELEASES: &str = include_str!("../library/RELEASES");

/// SHA-256 (hex) of every library file's path and contents, in path order.
pub fn content_digest() -> String {
    let mut sorted: Vec<&LibraryFile> = FILES.iter().collect();
    sorted.sort_by_key(|f| f.path);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for f in sorted {
        ctx.update(f.path.as_bytes());
        ctx.update(&[0]);
        ctx.update(f.contents.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The recorded `(version, digest)` lines of [`RELEASES`].
pub fn releases() -> Vec<(&'static str, &'static str)> {
    RELEASES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .collect()
}

/// One file of the library, at its path in the `gitlab-ci-templates` project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibraryFile {
    pub path: &'static str,
    pub contents: &'static str,
}

macro_rules! file {
    ($path:literal) => {
        LibraryFile {
            path: $path,
            contents: include_str!(concat!("../library/", $path)),
        }
    };
}

/// Every file of the library, sorted by path.
pub const FILES: &[LibraryFile] = &[
    file!("templates/base.yml"),
    file!("templates/infrastructure/template.yml"),
    file!("templates/jobs/build-image.yml"),
    file!("templates/jobs/cleanup-ephemeral.yml"),
    file!("templates/jobs/contract-test.yml"),
    file!("templates/jobs/deploy-ephemeral.yml"),
    file!("templates/jobs/gitleaks.yml"),
    file!("templates/jobs/k6-performance.yml"),
    file!("templates/jobs/lint.yml"),
    file!("templates/jobs/promote-artifact.yml"),
    file!("templates/jobs/push-harbor.yml"),
    file!("templates/jobs/sast.yml"),
    file!("templates/jobs/sbom.yml"),
    file!("templates/jobs/sca.yml"),
    file!("templates/jobs/trivy-scan.yml"),
    file!("templates/jobs/unit-test.yml"),
    file!("templates/languages/go.yml"),
    file!("templates/languages/helm.yml"),
    file!("templates/languages/node.yml"),
    file!("templates/languages/python.yml"),
    file!("templates/languages/rust.yml"),
    file!("templates/languages/shell.yml"),
    file!("templates/languages/terraform.yml"),
    file!("templates/library/template.yml"),
    file!("templates/microservice/template.yml"),
    file!("templates/operator/template.yml"),
    file!("templates/patterns/infrastructure.yml"),
    file!("templates/patterns/library.yml"),
    file!("templates/patterns/microservice.yml"),
    file!("templates/patterns/operator.yml"),
    file!("templates/patterns/static-site.yml"),
    file!("templates/sast/go.yml"),
    file!("templates/sast/javascript.yml"),
    file!("templates/sast/python.yml"),
    file!("templates/sast/rust.yml"),
    file!("templates/stages.yml"),
    file!("templates/static-site/template.yml"),
    file!("README.md"),
];

/// The project path services include the library from (GitLab group `platform_services`; the
/// plan's usage example spells it `platform-services`, which is accepted too).
pub const PROJECT_PATHS: &[&str] = &[
    "platform_services/gitlab-ci-templates",
    "platform-services/gitlab-ci-templates",
];

/// Rewrites a service's `include: - project: <this library> … file: [...]` into `include: -
/// local: /…` entries, so the pipeline runs against a copy of the library placed at the
/// repository root (gitlab-ci-local has no access to the GitLab project). Other includes and the
/// rest of the file are kept as they are.
pub fn localize_includes(ci_yaml: &str) -> String {
    let mut out = Vec::new();
    let mut lines = ci_yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let project = trimmed
            .strip_prefix("- project:")
            .map(|p| p.trim().trim_matches(|c| c == '\'' || c == '"'));
        if !project.is_some_and(|p| PROJECT_PATHS.contains(&p)) {
            out.push(line.to_owned());
            continue;
        }
        // Skip `ref:` and `file:`; turn each file entry into a local include.
        while let Some(next) = lines.peek() {
            let t = next.trim_start();
            let i = next.len() - t.len();
            if i <= indent || t.is_empty() {
                break;
            }
            if let Some(file) = t.strip_prefix("- ") {
                let file = file.trim().trim_matches(|c| c == '\'' || c == '"');
                out.push(format!(
                    "{}- local: '/{}'",
                    " ".repeat(indent),
                    file.trim_start_matches('/')
                ));
            } else if let Some(file) = t
                .strip_prefix("file:")
                .map(str::trim)
                .filter(|f| !f.is_empty())
            {
                let file = file.trim_matches(|c| c == '\'' || c == '"');
                out.push(format!(
                    "{}- local: '/{}'",
                    " ".repeat(indent),
                    file.trim_start_matches('/')
                ));
            }
            lines.next();
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// The library file at `path`.
pub fn get(path: &str) -> Option<&'static LibraryFile> {
    FILES.iter().find(|f| f.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library logs in where phase 13 mounts the JWT auth method.
    #[test]
    fn the_library_logs_in_at_the_jwt_mount_of_the_contract() {
        let base = FILES
            .iter()
            .find(|f| f.path == "templates/base.yml")
            .expect("templates/base.yml");
        let line = format!("VAULT_AUTH_PATH: {}", common::contract::JWT_MOUNT);
        assert!(base.contents.contains(&line), "base.yml must set {line}");
    }

    fn on_disk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                on_disk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }

    /// The version policy (docs/phase-14-ci-templates.md): every change to the library's files
    /// is a new version, recorded with its digest, so phase 14 tags it and services can pin it.
    #[test]
    fn a_library_change_is_a_new_version() {
        let releases = super::releases();
        let (last, digest) = *releases.last().expect("RELEASES lists versions");
        let now = super::content_digest();
        assert!(
            releases.iter().any(|(_, d)| *d == now),
            "the library's files changed since v{last}: add `<new version> {now}` to ci-templates/library/RELEASES and put that version in library/VERSION"
        );
        assert_eq!(
            (last, digest),
            (super::VERSION, now.as_str()),
            "library/VERSION must be the newest line of RELEASES, and its files must be that version's"
        );
        let mut versions: Vec<&str> = releases.iter().map(|(v, _)| *v).collect();
        versions.dedup();
        assert_eq!(versions.len(), releases.len(), "a version is listed twice");
    }

    #[test]
    fn every_file_in_the_folder_is_embedded() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("library");
        let mut found = Vec::new();
        on_disk(&base, &base, &mut found);
        // The version files describe the content; they are not part of it (nor of its digest).
        found.retain(|p| p != "VERSION" && p != "RELEASES");
        found.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|f| f.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, found);
    }

    #[test]
    fn project_includes_become_local_ones() {
        let service = "include:\n  - project: 'platform-services/gitlab-ci-templates'\n    ref: main\n    file:\n      - 'templates/stages.yml'\n      - 'templates/languages/go.yml'\n  - project: other/group\n    file: x.yml\n\nvariables:\n  SERVICE_NAME: s\n";
        assert_eq!(
            localize_includes(service),
            "include:\n  - local: '/templates/stages.yml'\n  - local: '/templates/languages/go.yml'\n  - project: other/group\n    file: x.yml\n\nvariables:\n  SERVICE_NAME: s\n"
        );
    }

    #[test]
    fn the_plan_layout_is_complete() {
        let count = |prefix: &str| FILES.iter().filter(|f| f.path.starts_with(prefix)).count();
        assert!(get("templates/base.yml").is_some() && get("templates/stages.yml").is_some());
        assert_eq!(count("templates/jobs/"), 14, "the 14 jobs of plan §1.1");
        assert_eq!(count("templates/patterns/"), 5);
        assert_eq!(
            count("templates/languages/"),
            7,
            "the plan's 6 languages + rust"
        );
        for pattern in [
            "microservice",
            "library",
            "infrastructure",
            "static-site",
            "operator",
        ] {
            let component = get(&format!("templates/{pattern}/template.yml")).expect("component");
            assert!(
                component.contents.starts_with('#')
                    && component.contents.contains("spec:\n  inputs:")
            );
        }
    }

    /// The stage list other crates rely on (the DORA collector's always-kept `stage` labels) is
    /// the library's own.
    #[test]
    fn the_shared_stage_list_is_stages_yml() {
        let file = FILES
            .iter()
            .find(|f| f.path == "templates/stages.yml")
            .unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(file.contents).unwrap();
        let stages: Vec<&str> = doc["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        assert_eq!(stages, common::contract::LIBRARY_STAGES);
    }
}
