//! The template library's real-world corpus (issue 19): public projects fetched from the package
//! registries at their pinned versions, each run as a merge request pipeline under gitlab-ci-local
//! with only the plan's include file, and each job's verdict classified (pass, undetermined, red).
//! `corpus/corpus.toml` lists the projects; `template-corpus` (scripts/corpus.sh) runs them all and
//! writes the verdict table; the crate's tests run the `ci = true` ones.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::local_run::{LocalRepo, PipelineKind};

/// The corpus list, embedded so the test and the runner read the same pins.
pub const CORPUS_TOML: &str = include_str!("../corpus/corpus.toml");

#[derive(Debug, Deserialize)]
struct CorpusFile {
    /// Package versions a project without a lock file resolves are those published before this
    /// instant (npm's `before`), so a verdict does not drift as the registry moves on. Go, uv,
    /// Poetry and Cargo projects here carry their lock (go.sum pins Go modules); a Rust library
    /// without Cargo.lock still resolves today's crates (cargo has no such setting).
    registries_as_of: String,
    project: Vec<CorpusProject>,
    /// Layouts issue 19 asks for that no registry this machine reaches can supply, and why.
    #[serde(default)]
    missing: Vec<MissingLayout>,
}

/// A layout the corpus should cover but cannot, with what was tried: printed in the verdict
/// document so the gap is never silent.
#[derive(Debug, Clone, Deserialize)]
pub struct MissingLayout {
    pub language: String,
    pub layout: String,
    pub why: String,
}

/// One public project of the corpus.
#[derive(Debug, Clone, Deserialize)]
pub struct CorpusProject {
    pub name: String,
    /// The `languages/<language>.yml` its include file names.
    pub language: String,
    pub layout: String,
    pub repository: String,
    pub tag: String,
    #[serde(default)]
    pub commit: Option<String>,
    pub licence: String,
    pub source: RegistrySource,
    /// Files the registry artefact adds that the repository does not have.
    #[serde(default)]
    pub drop: Vec<String>,
    /// The project's directory inside the artefact, when the artefact carries more than the
    /// project (a chart or a module inside a Go module's zip).
    #[serde(default)]
    pub root: Option<String>,
    /// Run by the README's test command (one project per language).
    #[serde(default)]
    pub ci: bool,
    /// Each job's verdict on the last full run, and why where it is not a pass.
    #[serde(default)]
    pub expect: BTreeMap<String, String>,
    #[serde(default)]
    pub reason: BTreeMap<String, String>,
}

/// Where a project's source comes from: a registry, a name, a version and the artefact's checksum.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistrySource {
    /// `go` (module proxy), `pypi` (sdist), `npm` (tarball) or `crates` (.crate).
    pub registry: String,
    pub name: String,
    pub version: String,
    /// `h1:…` for a Go module (go.sum's), `sha256:<hex>` for an archive.
    pub checksum: String,
}

/// The layouts the corpus lacks (see [`MissingLayout`]).
pub fn missing_layouts() -> anyhow::Result<Vec<MissingLayout>> {
    Ok(corpus_file()?.missing)
}

/// The corpus projects.
pub fn projects() -> anyhow::Result<Vec<CorpusProject>> {
    Ok(corpus_file()?.project)
}

fn corpus_file() -> anyhow::Result<CorpusFile> {
    toml::from_str(CORPUS_TOML).context("parsing corpus/corpus.toml")
}

/// The include file the plan gives a new library project: stages, the language, the pattern.
pub fn include_file(language: &str) -> String {
    format!(
        "include:\n  - project: 'platform_services/gitlab-ci-templates'\n    ref: v{}\n    file:\n      - 'templates/stages.yml'\n      - 'templates/languages/{language}.yml'\n      - 'templates/patterns/library.yml'\n",
        crate::library::VERSION
    )
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<std::process::Output> {
    let out = command
        .output()
        .with_context(|| format!("{what}: starting"))?;
    if !out.status.success() {
        bail!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn sha256_hex(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok(digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Downloads `url` into `cache` once, and checks its SHA-256.
fn download(url: &str, cache: &Path, file: &str, checksum: &str) -> anyhow::Result<PathBuf> {
    let target = cache.join(file);
    let want = checksum
        .strip_prefix("sha256:")
        .with_context(|| format!("{file}: checksum must be sha256:<hex>, got {checksum}"))?;
    if !target.exists() || sha256_hex(&target)? != want {
        std::fs::create_dir_all(cache)?;
        let partial = cache.join(format!("{file}.partial"));
        run(
            Command::new("curl")
                .args(["-fsSL", "--retry", "3", "--max-time", "300", "-o"])
                .arg(&partial)
                .arg(url),
            &format!("downloading {url}"),
        )?;
        std::fs::rename(&partial, &target)?;
    }
    let got = sha256_hex(&target)?;
    if got != want {
        bail!("{url}: sha256 {got}, the corpus pins {want}: the registry served another artefact");
    }
    Ok(target)
}

/// The sdist's URL from `PyPI`'s simple index (PEP 503 links carry `#sha256=`).
fn pypi_sdist_url(name: &str, version: &str) -> anyhow::Result<String> {
    let index = run(
        Command::new("curl").args([
            "-fsSL",
            "--max-time",
            "60",
            &format!("https://pypi.org/simple/{name}/"),
        ]),
        &format!("reading PyPI's index of {name}"),
    )?;
    let html = String::from_utf8_lossy(&index.stdout);
    let file = format!("{}-{version}.tar.gz", name.replace('-', "_"));
    let alt = format!("{name}-{version}.tar.gz");
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|href| {
            let path = href.split('#').next().unwrap_or("");
            path.ends_with(&format!("/{file}")) || path.ends_with(&format!("/{alt}"))
        })
        .map(|href| href.split('#').next().unwrap_or(href).to_owned())
        .with_context(|| format!("PyPI lists no sdist {alt} of {name}"))
}

fn unpack_single_dir(archive: &Path, into: &Path) -> anyhow::Result<PathBuf> {
    let scratch = into.with_extension("unpack");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    run(
        Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(&scratch),
        &format!("unpacking {}", archive.display()),
    )?;
    let mut entries = std::fs::read_dir(&scratch)?.collect::<Result<Vec<_>, _>>()?;
    if entries.len() != 1 || !entries[0].file_type()?.is_dir() {
        bail!("{}: expected one top-level directory", archive.display());
    }
    let top = entries.remove(0).path();
    std::fs::rename(&top, into)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(into.to_path_buf())
}

fn copy_writable(from: &Path, to: &Path) -> anyhow::Result<()> {
    run(
        Command::new("cp").arg("-R").arg(from).arg(to),
        &format!("copying {}", from.display()),
    )?;
    run(
        Command::new("chmod").args(["-R", "u+w"]).arg(to),
        "making the copy writable",
    )?;
    Ok(())
}

/// A Go module zip keeps no file modes, so a checkout's scripts arrive not executable: every file
/// that starts with `#!` is made executable again. On pyenv's tree this restores each of the
/// repository's 50 executables (and marks 40 more, its .bats files among them, which is harmless).
fn restore_script_modes(dir: &Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            restore_script_modes(&path)?;
        } else if kind.is_file() {
            let mut head = [0u8; 2];
            let is_script = std::fs::File::open(&path)
                .and_then(|mut f| f.read_exact(&mut head))
                .is_ok()
                && &head == b"#!";
            if is_script {
                let mut mode = entry.metadata()?.permissions();
                mode.set_mode(mode.mode() | 0o111);
                std::fs::set_permissions(&path, mode)?;
            }
        }
    }
    Ok(())
}

/// A path inside the artefact: relative, with no `..` (the corpus list cannot reach outside it).
fn relative(rel: &str) -> anyhow::Result<&Path> {
    let path = Path::new(rel);
    if rel.is_empty()
        || path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        bail!("corpus.toml: {rel:?} must be a relative path inside the artefact, without ..");
    }
    Ok(path)
}

/// Fetches `project`'s source into `dir/<name>` (a fresh directory), from `cache` when present.
pub fn fetch(project: &CorpusProject, cache: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let s = &project.source;
    let target = dir.join(&project.name);
    let _ = std::fs::remove_dir_all(&target);
    match s.registry.as_str() {
        "go" => {
            let modcache = cache.join("gomod");
            let out = run(
                Command::new("go")
                    .args(["mod", "download", "-json"])
                    .arg(format!("{}@{}", s.name, s.version))
                    .env("GOMODCACHE", &modcache)
                    .env("GOFLAGS", "-mod=mod"),
                &format!("go mod download {}@{}", s.name, s.version),
            )?;
            let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            if info["Sum"] != s.checksum.as_str() {
                bail!(
                    "{}@{}: the module proxy gave {}, the corpus pins {}",
                    s.name,
                    s.version,
                    info["Sum"],
                    s.checksum
                );
            }
            let from = info["Dir"].as_str().context("go mod download: no Dir")?;
            copy_writable(Path::new(from), &target)?;
            restore_script_modes(&target)?;
        }
        "pypi" => {
            let url = pypi_sdist_url(&s.name, &s.version)?;
            let file = url.rsplit('/').next().unwrap_or("sdist.tar.gz").to_owned();
            let archive = download(&url, &cache.join("pypi"), &file, &s.checksum)?;
            unpack_single_dir(&archive, &target)?;
        }
        "npm" => {
            let base = s.name.rsplit('/').next().unwrap_or(&s.name);
            let url = format!(
                "https://registry.npmjs.org/{}/-/{base}-{}.tgz",
                s.name, s.version
            );
            let archive = download(
                &url,
                &cache.join("npm"),
                &format!("{base}-{}.tgz", s.version),
                &s.checksum,
            )?;
            unpack_single_dir(&archive, &target)?;
        }
        "crates" => {
            let url = format!(
                "https://static.crates.io/crates/{0}/{0}-{1}.crate",
                s.name, s.version
            );
            let archive = download(
                &url,
                &cache.join("crates"),
                &format!("{}-{}.crate", s.name, s.version),
                &s.checksum,
            )?;
            unpack_single_dir(&archive, &target)?;
        }
        other => bail!("{}: unknown registry {other}", project.name),
    }
    if let Some(root) = &project.root {
        let inner = target.join(relative(root)?);
        let moved = dir.join(format!("{}.root", project.name));
        let _ = std::fs::remove_dir_all(&moved);
        std::fs::rename(&inner, &moved)
            .with_context(|| format!("{}: no directory {root} in the artefact", project.name))?;
        std::fs::remove_dir_all(&target)?;
        std::fs::rename(&moved, &target)?;
    }
    for rel in &project.drop {
        let path = target.join(relative(rel)?);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    // The project's own CI file (if any) is for another CI system or another GitLab: the corpus
    // measures the library with the plan's include file alone.
    std::fs::write(
        target.join(".gitlab-ci.yml"),
        include_file(&project.language),
    )?;
    Ok(target)
}

/// What became of one job, and the log line that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct JobVerdict {
    pub job: String,
    /// `pass`, `undetermined`, `warn` or `red`.
    pub verdict: String,
    pub reason: String,
    pub seconds: Option<f64>,
}

/// One project's MR pipeline.
#[derive(Debug, Clone)]
pub struct ProjectRun {
    pub name: String,
    pub jobs: Vec<JobVerdict>,
    pub wall_seconds: f64,
    pub output: String,
}

impl ProjectRun {
    pub fn verdict(&self, job: &str) -> Option<&JobVerdict> {
        self.jobs.iter().find(|j| j.job == job)
    }
}

/// The job's log lines (gitlab-ci-local prefixes each with `[time] job >`).
fn job_lines<'a>(output: &'a str, job: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    output.lines().filter_map(move |line| {
        let body = line
            .trim_start()
            .strip_prefix('[')
            .and_then(|l| l.split_once("] "))
            .map_or(line, |(_, b)| b);
        let rest = body.strip_prefix(job)?;
        let rest = rest.trim_start();
        rest.strip_prefix("> ").map(str::trim)
    })
}

/// Classifies a job from gitlab-ci-local's verdict and its log.
pub fn classify(output: &str, job: &str, verdict: &str) -> (String, String) {
    let lines: Vec<&str> = job_lines(output, job).collect();
    let find = |needles: &[&str]| {
        lines
            .iter()
            .rev()
            .find(|l| needles.iter().any(|n| l.contains(n)))
            .map(|l| (*l).to_owned())
    };
    match verdict {
        "PASS" => ("pass".into(), String::new()),
        "WARN" => {
            // Only the library's own statement, at the start of a line, makes a job undetermined:
            // a test or tool that merely prints the word does not.
            if let Some(line) = lines.iter().rev().find(|l| l.starts_with("UNDETERMINED:")) {
                ("undetermined".into(), (*line).to_owned())
            } else {
                let line = find(&["WARNING"]).unwrap_or_default();
                ("warn".into(), line)
            }
        }
        "FAIL" => {
            let line = find(&["GATE FAILED", "rror", "FAIL"])
                .or_else(|| lines.last().map(|l| (*l).to_owned()))
                .unwrap_or_default();
            ("red".into(), line)
        }
        other => (other.to_lowercase(), String::new()),
    }
}

/// Runs `project`'s merge request pipeline (every job GitLab would create) from `source`.
pub fn run_project(project: &CorpusProject, source: &Path) -> anyhow::Result<ProjectRun> {
    let repo = LocalRepo::prepare(source)
        .and_then(|repo| repo.isolated(&cache_dir().join("build-cache")))
        .with_context(|| format!("preparing {} for gitlab-ci-local", project.name))?;
    let jobs: Vec<String> = repo
        .jobs_of(&PipelineKind::MergeRequest, &[])?
        .into_iter()
        .collect();
    let names: Vec<&str> = jobs.iter().map(String::as_str).collect();
    // The platform's instance-level variables a project does not set itself: the schema mirror;
    // and, for the corpus, the registries as of the recorded day.
    let as_of = corpus_file()?.registries_as_of;
    let mut platform = vec![("npm_config_before".to_owned(), as_of)];
    if project.language == "helm" {
        let schemas = cache_dir().join("k8s-schemas");
        crate::kube_schemas::write_schema_dir(&schemas)?;
        platform.push((
            "KUBECONFORM_SCHEMA_LOCATION".to_owned(),
            crate::kube_schemas::schema_location(&schemas),
        ));
    }
    let platform: Vec<(&str, &str)> = platform
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let started = std::time::Instant::now();
    let result = repo.run_of(&names, &PipelineKind::MergeRequest, &platform)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let verdicts = result
        .jobs
        .iter()
        .map(|outcome| {
            let (verdict, reason) = classify(&result.output, &outcome.job, &outcome.verdict);
            JobVerdict {
                job: outcome.job.clone(),
                verdict,
                reason,
                seconds: outcome.seconds,
            }
        })
        .collect();
    Ok(ProjectRun {
        name: project.name.clone(),
        jobs: verdicts,
        wall_seconds,
        output: result.output,
    })
}

/// Differences between a run and the project's recorded `expect` (empty: as recorded).
pub fn unexpected(project: &CorpusProject, run: &ProjectRun) -> Vec<String> {
    let mut problems = Vec::new();
    for job in &run.jobs {
        let want = project.expect.get(&job.job).map_or("pass", String::as_str);
        if job.verdict != want {
            problems.push(format!(
                "{}: {} is {}, the corpus records {want}{}",
                project.name,
                job.job,
                job.verdict,
                if job.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", job.reason)
                }
            ));
        }
    }
    for job in project.expect.keys() {
        if run.verdict(job).is_none() {
            problems.push(format!("{}: {job} did not run", project.name));
        }
    }
    problems
}

/// The verdict table of a full run, as Markdown.
pub fn markdown(
    projects: &[CorpusProject],
    runs: &[ProjectRun],
    missing: &[MissingLayout],
    commit: &str,
) -> String {
    let mut jobs: Vec<String> = runs
        .iter()
        .flat_map(|r| r.jobs.iter().map(|j| j.job.clone()))
        .collect();
    jobs.sort();
    jobs.dedup();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The CI template library on real-world repositories\n\nGenerated by `scripts/corpus.sh` from a full run of commit `{commit}` (library v{}). Each project is\nfetched from its package registry at the pinned version (ci-templates/corpus/corpus.toml) and runs\nits merge request pipeline under gitlab-ci-local with only the plan's include file.\n\nVerdicts: **pass**; **undetermined** (the tool cannot run on this machine and the job says so, in\nits warning state: never counted green); **red** (a defect of the project itself, explained below).\n",
        crate::library::VERSION
    );
    let _ = writeln!(out, "## Projects\n");
    let _ = writeln!(
        out,
        "| project | language | layout | source | upstream | licence |\n|---|---|---|---|---|---|"
    );
    for p in projects {
        let pin = p.commit.as_deref().map_or_else(
            || format!("tag {}", p.tag),
            |c| format!("tag {} ({})", p.tag, &c[..c.len().min(12)]),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} {}@{} | {} {pin} | {} |",
            p.name,
            p.language,
            p.layout,
            p.source.registry,
            p.source.name,
            p.source.version,
            p.repository,
            p.licence
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(out, "\n## Layouts the corpus lacks\n");
        for m in missing {
            let _ = writeln!(out, "- **{} ({})**: {}", m.language, m.layout, m.why);
        }
    }
    let _ = writeln!(out, "\n## Verdicts\n");
    let _ = writeln!(
        out,
        "| project | {} | wall time | sum of job times |",
        jobs.join(" | ")
    );
    let _ = writeln!(out, "|---|{}---|---|", "---|".repeat(jobs.len()));
    for run in runs {
        let cells: Vec<String> = jobs
            .iter()
            .map(|j| run.verdict(j).map_or("—".into(), |v| v.verdict.clone()))
            .collect();
        let sum: f64 = run.jobs.iter().filter_map(|j| j.seconds).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} s | {sum:.0} s |",
            run.name,
            cells.join(" | "),
            run.wall_seconds
        );
    }
    let _ = writeln!(out, "\n## Every job that is not a pass\n");
    for run in runs {
        let project = projects.iter().find(|p| p.name == run.name);
        for job in run.jobs.iter().filter(|j| j.verdict != "pass") {
            let why = project
                .and_then(|p| p.reason.get(&job.job))
                .map_or("(not yet explained)", String::as_str);
            let _ = writeln!(
                out,
                "- **{} / {}: {}.** {why} Log: `{}`",
                run.name,
                job.job,
                job.verdict,
                job.reason.replace('`', "'")
            );
        }
    }
    out
}

/// Where fetched artefacts are kept between runs (outside the repository).
pub fn cache_dir() -> PathBuf {
    common::config::tools_dir()
        .parent()
        .map_or_else(|| PathBuf::from(".corpus-cache"), |p| p.join("corpus"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_parses_and_pins_every_source() {
        let projects = projects().unwrap();
        assert!(
            projects.len() >= 16,
            "issue 19 asks for at least 16 projects"
        );
        for p in &projects {
            let c = &p.source.checksum;
            match p.source.registry.as_str() {
                "go" => assert!(c.starts_with("h1:"), "{}", p.name),
                _ => assert_eq!(
                    c.strip_prefix("sha256:").map(str::len),
                    Some(64),
                    "{}",
                    p.name
                ),
            }
            assert!(!p.licence.is_empty() && p.repository.starts_with("https://"));
        }
        let ci: std::collections::BTreeSet<&str> = projects
            .iter()
            .filter(|p| p.ci)
            .map(|p| p.language.as_str())
            .collect();
        assert_eq!(
            ci.len(),
            projects.iter().filter(|p| p.ci).count(),
            "one CI project per language"
        );
    }

    /// Issue 19's layout list: each is covered by a project, or declared missing with the reason
    /// (which the verdict document prints). A project dropped without saying so fails here.
    #[test]
    fn the_corpus_covers_each_layout_or_says_why_not() {
        let projects = projects().unwrap();
        let missing = missing_layouts().unwrap();
        let required: &[(&str, &str)] = &[
            ("python", "requirements"),
            ("python", "uv.lock"),
            ("python", "Poetry"),
            ("node", "no lock file"),
            ("node", "npm-shrinkwrap.json"),
            ("node", "yarn"),
            ("go", "library"),
            ("go", "service"),
            ("rust", "workspace"),
            ("rust", "without Cargo.lock"),
            ("shell", "bats"),
            ("helm", "chart"),
            ("terraform", "module"),
        ];
        for (language, layout) in required {
            let covered = projects
                .iter()
                .any(|p| p.language == *language && p.layout.contains(layout));
            let declared = missing
                .iter()
                .any(|m| m.language == *language && m.layout.contains(layout) && m.why.len() > 80);
            assert!(
                covered || declared,
                "no {language} project with a layout of `{layout}`, and no [[missing]] entry saying why"
            );
            assert!(
                !(covered && declared),
                "{language} `{layout}` is covered now: remove its [[missing]] entry"
            );
        }
    }

    #[test]
    fn verdicts_come_from_the_job_log() {
        let log = "[10:00:01 1 s] unit-test > UNDETERMINED: coverage not measured: cargo-llvm-cov is not installed\n[10:00:02 2 s] lint > GATE FAILED: not gofmt-formatted: a.go\n[10:00:03 3 s] dependency-scan > UNDETERMINED: vulnerability database unavailable\n";
        assert_eq!(classify(log, "unit-test", "WARN").0, "undetermined");
        assert_eq!(
            classify(log, "lint", "FAIL"),
            (
                "red".into(),
                "GATE FAILED: not gofmt-formatted: a.go".into()
            )
        );
        assert_eq!(classify(log, "dependency-scan", "WARN").0, "undetermined");
        assert_eq!(classify(log, "sast", "PASS").0, "pass");
        // A warning that is not an undetermined tool stays a warning, even when the word appears.
        assert_eq!(
            classify(
                "[1] unit-test > test_marks_UNDETERMINED: ok\n[1] unit-test > WARNING: slow\n",
                "unit-test",
                "WARN"
            )
            .0,
            "warn"
        );
        assert_eq!(
            classify(
                "[1] dependency-scan > WARNING: 7 high CVEs\n",
                "dependency-scan",
                "WARN"
            )
            .0,
            "warn"
        );
    }

    #[test]
    fn corpus_paths_stay_inside_the_artefact() {
        assert!(relative("charts/metrics-server").is_ok());
        for bad in ["../outside", "/etc/passwd", "a/../../b", ""] {
            assert!(relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_include_file_names_only_stages_language_and_pattern() {
        let text = include_file("go");
        assert_eq!(text.matches("      - 'templates/").count(), 3);
        assert!(
            text.contains("templates/languages/go.yml") && text.contains("patterns/library.yml")
        );
    }
}
