//! Run a service's pipeline against the embedded library on this machine, with gitlab-ci-local
//! (shell executor): `ci-templates local-run SERVICE_DIR [JOB…]`. The service is copied into a
//! scratch git repository with the library at `templates/` and its `include: project:` of the
//! library made local, so what runs is exactly what phase 14 pushes. The tests and the pipeline
//! benchmark use the same code.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::library;

/// gitlab-ci-local version the project pins (4.74+ crash on Node 20).
pub const GITLAB_CI_LOCAL_VERSION: &str = "4.73.0";

pub use common::config::tools_dir;

/// PATH with the tools (gitlab-ci-local, gitleaks, trivy, syft, semgrep, cosign) first.
pub fn path_with_tools() -> std::ffi::OsString {
    let tools = tools_dir();
    let mut dirs = vec![
        tools.join("venv/bin"),
        tools.join("semgrep-venv/bin"),
        tools.join("npm/node_modules/.bin"),
        tools.join("go-bin"),
    ];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap_or_default()
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=ci-templates",
            "-c",
            "user.email=ci-templates@localhost",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if entry.file_name() == ".git" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The kinds of pipeline GitLab runs (docs/adr/0008), as the predefined variables GitLab sets for
/// each (`ci/variables/predefined_variables`). gitlab-ci-local derives the branch from the checkout
/// and defaults `CI_COMMIT_REF_PROTECTED` to false; these override it as GitLab would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineKind {
    /// A push to the protected default branch.
    Main,
    /// A merge request pipeline (its source branch is not protected).
    MergeRequest,
    /// A push of a protected release tag.
    ReleaseTag(String),
    /// A push of a tag no protection rule matches.
    UnprotectedTag(String),
    /// A push to an unprotected branch.
    Branch(String),
}

/// The source branch of the merge request kind.
pub const MR_SOURCE_BRANCH: &str = "feature/faster-relay";

impl PipelineKind {
    /// The predefined variables that differ from what gitlab-ci-local derives. An empty value
    /// stands for a variable GitLab leaves unset (rules treat both alike).
    pub fn variables(&self) -> Vec<(String, String)> {
        let v = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        match self {
            Self::Main => v(&[("CI_COMMIT_REF_PROTECTED", "true")]),
            Self::MergeRequest => v(&[
                ("CI_PIPELINE_SOURCE", "merge_request_event"),
                ("CI_MERGE_REQUEST_IID", "7"),
                ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", MR_SOURCE_BRANCH),
                ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
                ("CI_COMMIT_BRANCH", ""),
                ("CI_COMMIT_REF_NAME", MR_SOURCE_BRANCH),
                ("CI_COMMIT_REF_PROTECTED", "false"),
            ]),
            Self::ReleaseTag(tag) | Self::UnprotectedTag(tag) => {
                let protected = if matches!(self, Self::ReleaseTag(_)) {
                    "true"
                } else {
                    "false"
                };
                v(&[
                    ("CI_COMMIT_BRANCH", ""),
                    ("CI_COMMIT_TAG", tag),
                    ("CI_COMMIT_REF_NAME", tag),
                    ("CI_COMMIT_REF_PROTECTED", protected),
                ])
            }
            Self::Branch(branch) => v(&[
                ("CI_COMMIT_BRANCH", branch),
                ("CI_COMMIT_REF_NAME", branch),
                ("CI_COMMIT_REF_PROTECTED", "false"),
            ]),
        }
    }

    /// `--variable K=V` arguments for gitlab-ci-local.
    pub fn args(&self) -> Vec<String> {
        self.variables()
            .into_iter()
            .flat_map(|(k, v)| ["--variable".to_owned(), format!("{k}={v}")])
            .collect()
    }

    /// The kind for the old two-way switch.
    pub fn of(merge_request: bool) -> Self {
        if merge_request {
            Self::MergeRequest
        } else {
            Self::Main
        }
    }
}

/// Where the scratch repository keeps the library (GitLab reads it from its own project).
pub const LIBRARY_DIR: &str = ".ci-library";

/// `local: /templates/…` (the library's includes, resolved in its own project on GitLab) points
/// into [`LIBRARY_DIR`].
fn relocate_local_includes(text: &str) -> String {
    text.replace(
        "local: /templates/",
        &format!("local: /{LIBRARY_DIR}/templates/"),
    )
    .replace(
        "local: '/templates/",
        &format!("local: '/{LIBRARY_DIR}/templates/"),
    )
}

/// A scratch repository holding a service and the library.
pub struct LocalRepo {
    dir: tempfile::TempDir,
    /// Directories put before the tools on the jobs' PATH (test doubles of tools).
    path_first: Vec<std::path::PathBuf>,
    /// Code nobody here wrote (the corpus) runs with a cleared environment and this throwaway HOME.
    isolated: Option<Isolation>,
}

/// The environment a pipeline of untrusted code runs in: nothing of the host's environment but
/// the variables that locate the toolchains and the machine's CA bundle (a value carrying
/// `user:password@` is dropped), and a HOME of its own holding only credential-free lines of the
/// host's registry settings. This keeps credentials out of what the code is handed; it is not a
/// sandbox: the shell executor runs the code as this user, so files it can read by absolute path
/// stay readable (run the corpus as a user that holds no credentials).
struct Isolation {
    home: tempfile::TempDir,
    build_cache: std::path::PathBuf,
}

/// Host variables an isolated pipeline keeps: locale, the CA bundle (TLS to the registries), the
/// registries' own settings, and where pyenv keeps its interpreters.
const ISOLATED_PASSTHROUGH: &[&str] = &[
    "LANG",
    "LC_ALL",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PYENV_ROOT",
    "RUSTUP_AUTO_INSTALL",
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "GOTOOLCHAIN",
];

/// Host dotfiles copied into the throwaway HOME: registry settings, never credentials (lines that
/// may hold one are left out, see [`credential_free`]).
const ISOLATED_DOTFILES: &[&str] = &[".npmrc", ".gitconfig"];

/// `text` without terminal colour and cursor codes (ESC `[` … final byte).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A URL with a user part (`https://user:token@host/…`).
fn has_userinfo(value: &str) -> bool {
    value.split("://").skip(1).any(|rest| {
        rest.split(['/', ' ', '"', '\'', ','])
            .next()
            .is_some_and(|authority| authority.contains('@'))
    })
}

/// The lines of an npmrc or gitconfig that cannot hold a credential: no auth, token, password,
/// user name, credential helper or extra header setting, and no URL with a user part.
pub(crate) fn credential_free(text: &str) -> String {
    const MARKERS: &[&str] = &[
        "auth",
        "token",
        "password",
        "passwd",
        "username",
        "credential",
        "helper",
        "extraheader",
        "cookie",
        "secret",
    ];
    let mut kept = String::new();
    // A value continued with a trailing backslash goes with its line.
    let mut dropping = false;
    for line in text.lines() {
        let lower = line.to_lowercase();
        let continued = line.trim_end().ends_with('\\');
        if dropping || MARKERS.iter().any(|m| lower.contains(m)) || has_userinfo(line) {
            dropping = continued;
            continue;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// A job's verdict from gitlab-ci-local's summary, and when it started and finished (event order).
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub job: String,
    pub verdict: String,
    pub started: Option<usize>,
    pub finished: Option<usize>,
    pub seconds: Option<f64>,
}

/// What one gitlab-ci-local run printed and what became of each job.
#[derive(Debug)]
pub struct LocalRun {
    pub ok: bool,
    pub output: String,
    pub jobs: Vec<JobOutcome>,
}

impl LocalRun {
    pub fn verdict(&self, job: &str) -> &str {
        self.jobs
            .iter()
            .find(|j| j.job == job)
            .map_or("NOT RUN", |j| j.verdict.as_str())
    }

    /// Pairs of jobs that were running at the same time.
    pub fn overlapping(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (i, a) in self.jobs.iter().enumerate() {
            for b in &self.jobs[i + 1..] {
                if let (Some(sa), Some(fa), Some(sb), Some(fb)) =
                    (a.started, a.finished, b.started, b.finished)
                {
                    if sa < fb && sb < fa {
                        pairs.push((a.job.clone(), b.job.clone()));
                    }
                }
            }
        }
        pairs
    }
}

/// Seconds from gitlab-ci-local's `finished in 1.46 s` / `finished in 584 ms`.
fn duration(text: &str) -> Option<f64> {
    let rest = text.split("finished in ").nth(1)?;
    let mut words = rest.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    match words.next()? {
        "ms" => Some(value / 1000.0),
        "s" => Some(value),
        "min" => Some(value * 60.0),
        _ => None,
    }
}

/// Each job's verdict, start and end (line numbers of gitlab-ci-local's output) and duration.
fn parse_run(output: &str, jobs: &[&str]) -> Vec<JobOutcome> {
    let mut outcomes: Vec<JobOutcome> = Vec::new();
    let outcome = |outcomes: &mut Vec<JobOutcome>, job: &str| -> usize {
        if let Some(i) = outcomes.iter().position(|o| o.job == job) {
            return i;
        }
        outcomes.push(JobOutcome {
            job: job.to_owned(),
            verdict: "NOT RUN".into(),
            started: None,
            finished: None,
            seconds: None,
        });
        outcomes.len() - 1
    };
    for (index, line) in output.lines().enumerate() {
        let trimmed = line.trim_start();
        let mut words = trimmed.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if matches!(first, "PASS" | "FAIL" | "WARN") {
            // ` PASS  [ 395 ms] lint` (with --timestamps) or ` PASS  lint`.
            let after = trimmed[first.len()..].trim_start();
            let after = after.rsplit_once("] ").map_or(after, |(_, j)| j);
            // Only the jobs that ran: gitlab-ci-local's own warnings also start with WARN.
            if let Some(job) = after.split_whitespace().next().filter(|j| jobs.contains(j)) {
                let i = outcome(&mut outcomes, job);
                first.clone_into(&mut outcomes[i].verdict);
            }
            continue;
        }
        // `[08:41:28 7.14 ms] lint  starting shell (pre-build)` / `… lint  finished in 584 ms`
        let body = if trimmed.starts_with('[') {
            trimmed.split_once("] ").map_or(trimmed, |(_, b)| b)
        } else {
            trimmed
        };
        let mut words = body.split_whitespace();
        let (Some(job), Some(event)) = (words.next(), words.next()) else {
            continue;
        };
        if !jobs.contains(&job) {
            continue;
        }
        let i = outcome(&mut outcomes, job);
        if event == "starting" {
            outcomes[i].started = Some(index);
        } else if event == "finished" && body.contains("finished in") {
            outcomes[i].finished = Some(index);
            outcomes[i].seconds = duration(body);
        }
    }
    outcomes
}

impl LocalRepo {
    /// Copies `service` into a scratch repository, adds the library, localises the includes and
    /// commits on `main` (origin/HEAD → main, so the pipeline is a default-branch one).
    pub fn prepare(service: &Path) -> anyhow::Result<Self> {
        let name = service
            .file_name()
            .map_or_else(|| "service".into(), |n| n.to_string_lossy().into_owned());
        let dir = tempfile::Builder::new()
            .prefix(&format!("ci-templates-{name}-"))
            .tempdir()?;
        copy_dir(service, dir.path())?;
        // The library goes beside the project, in a directory of its own: a project's own
        // `templates/` (a Helm chart's) must not receive the library's files.
        for file in library::FILES {
            let target = dir.path().join(LIBRARY_DIR).join(file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, relocate_local_includes(file.contents))?;
        }
        let ci = dir.path().join(".gitlab-ci.yml");
        let text = std::fs::read_to_string(&ci)
            .with_context(|| format!("{} has no .gitlab-ci.yml", service.display()))?;
        std::fs::write(
            &ci,
            relocate_local_includes(&library::localize_includes(&text)),
        )?;
        git(dir.path(), &["init", "-q", "-b", "main"])?;
        git(
            dir.path(),
            &[
                "remote",
                "add",
                "origin",
                &format!("https://gitlab.invalid/platform_services/{name}.git"),
            ],
        )?;
        let repo = Self {
            dir,
            path_first: Vec::new(),
            isolated: None,
        };
        repo.commit("service and gitlab-ci-templates")?;
        Ok(repo)
    }

    /// Puts `dir` first on the PATH jobs run with.
    #[must_use]
    pub fn with_path_first(mut self, dir: &Path) -> Self {
        self.path_first.push(dir.to_path_buf());
        self
    }

    /// Runs the pipelines with a cleared environment and a throwaway HOME (see [`Isolation`]);
    /// `build_cache` keeps Go's build cache between projects (compiler output, no credentials).
    pub fn isolated(mut self, build_cache: &Path) -> anyhow::Result<Self> {
        let home = tempfile::Builder::new()
            .prefix("ci-templates-home-")
            .tempdir()?;
        let host_home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        for name in ISOLATED_DOTFILES {
            let Some(from) = host_home.as_ref().map(|h| h.join(name)) else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(&from) else {
                continue;
            };
            std::fs::write(home.path().join(name), credential_free(&text))?;
        }
        std::fs::create_dir_all(build_cache)?;
        self.isolated = Some(Isolation {
            home,
            build_cache: build_cache.to_path_buf(),
        });
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file into the repository and commits it.
    pub fn write(&self, rel: &str, contents: &str) -> anyhow::Result<()> {
        let target = self.path().join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, contents)?;
        self.commit(rel)
    }

    pub fn commit(&self, message: &str) -> anyhow::Result<()> {
        let p = self.path();
        git(p, &["add", "-A"])?;
        git(p, &["commit", "-q", "--allow-empty", "-m", message])?;
        // gitlab-ci-local takes CI_DEFAULT_BRANCH from origin/HEAD.
        git(p, &["update-ref", "refs/remotes/origin/main", "HEAD"])?;
        git(
            p,
            &[
                "symbolic-ref",
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/main",
            ],
        )
    }

    /// Runs gitlab-ci-local in the repository.
    pub fn gitlab_ci_local(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        // With --force-shell-executor, gitlab-ci-local keeps the container path /builds/… in
        // CI_PROJECT_DIR although the job runs in the checkout: point it at the checkout.
        let project_dir = format!("CI_PROJECT_DIR={}", self.path().display());
        let mut command = Command::new("gitlab-ci-local");
        if let Some(isolation) = &self.isolated {
            // rustup's toolchains stay where the host keeps them; everything else is fresh.
            let rustup_home = std::env::var_os("RUSTUP_HOME").or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(".rustup").into_os_string())
            });
            command
                .env_clear()
                .envs(
                    ISOLATED_PASSTHROUGH
                        .iter()
                        .filter_map(|name| std::env::var_os(name).map(|value| (*name, value)))
                        .filter(|(_, value)| !has_userinfo(&value.to_string_lossy())),
                )
                .env("HOME", isolation.home.path())
                .env("TMPDIR", isolation.home.path())
                .env("GOCACHE", isolation.build_cache.join("go-build"))
                .env(
                    "GOLANGCI_LINT_CACHE",
                    isolation.build_cache.join("golangci-lint"),
                );
            if let Some(rustup_home) = rustup_home {
                command.env("RUSTUP_HOME", rustup_home);
            }
        }
        command
            .args(["--variable", &project_dir])
            .args(args)
            .current_dir(self.path())
            .env("PATH", {
                let mut dirs = self.path_first.clone();
                dirs.extend(std::env::split_paths(&path_with_tools()));
                std::env::join_paths(dirs).unwrap_or_default()
            })
            .env(
                "GCL_IGNORE_PREDEFINED_VARS",
                "CI_PROJECT_DIR,CI_PIPELINE_SOURCE",
            );
        // Plain output for the parser. Not for code nobody here wrote: the jobs inherit these, and
        // a project's tests may check colours (hexyl's do; NO_COLOR fails them). Its output is
        // stripped of colour codes instead (`run_of`).
        if self.isolated.is_none() {
            command.env("NO_COLOR", "1").env("FORCE_COLOR", "0");
        }
        command
            .output()
            .with_context(|| {
                format!(
                    "running gitlab-ci-local (npm gitlab-ci-local@{GITLAB_CI_LOCAL_VERSION} in {}; ./scripts/setup-test-env.sh installs it)",
                    tools_dir().display()
                )
            })
    }

    /// The jobs GitLab would create: an MR pipeline, or a default-branch one (`--list-csv`
    /// evaluates the rules and leaves out `when: never`).
    pub fn jobs(&self, merge_request: bool) -> anyhow::Result<BTreeSet<String>> {
        self.jobs_of(&PipelineKind::of(merge_request), &[])
    }

    /// The jobs of a pipeline of `kind`, with `extra` variables (e.g. a commit message).
    pub fn jobs_of(
        &self,
        kind: &PipelineKind,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<BTreeSet<String>> {
        Ok(self.job_stages_of(kind, extra)?.into_keys().collect())
    }

    /// Those jobs with their stage.
    pub fn job_stages(
        &self,
        merge_request: bool,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        self.job_stages_of(&PipelineKind::of(merge_request), &[])
    }

    /// The merged pipeline configuration (`--preview`: includes and `extends` resolved).
    pub fn merged_config(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.gitlab_ci_local(&["--preview"])?;
        if !out.status.success() {
            bail!(
                "gitlab-ci-local --preview: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout))
            .context("parsing gitlab-ci-local --preview")
    }

    /// Whether GitLab would create a pipeline of `kind` at all: its `workflow:rules`, which
    /// gitlab-ci-local 4.73 does not apply, evaluated with the variables GitLab sets.
    pub fn pipeline_created(
        &self,
        kind: &PipelineKind,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<bool> {
        let mut vars: std::collections::BTreeMap<String, String> = [
            ("CI_PIPELINE_SOURCE", "push"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_COMMIT_REF_NAME", "main"),
            ("CI_DEFAULT_BRANCH", "main"),
            ("CI_COMMIT_REF_PROTECTED", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.extend(kind.variables());
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        vars.retain(|_, v| !v.is_empty());
        crate::rules::workflow_creates_pipeline(&self.merged_config()?["workflow"], &vars)
    }

    /// The jobs of a pipeline of `kind` with their stage (none when the workflow rules refuse
    /// the pipeline).
    pub fn job_stages_of(
        &self,
        kind: &PipelineKind,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        if !self.pipeline_created(kind, extra)? {
            return Ok(std::collections::BTreeMap::new());
        }
        let mut owned = vec!["--list-csv".to_owned()];
        owned.extend(kind.args());
        for (k, v) in extra {
            owned.extend(["--variable".to_owned(), format!("{k}={v}")]);
        }
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        let out = self.gitlab_ci_local(&args)?;
        if !out.status.success() {
            bail!(
                "gitlab-ci-local --list-csv: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout
            .lines()
            .skip_while(|l| !l.starts_with("name;stage;"))
            .skip(1)
            .filter_map(|l| {
                let mut fields = l.split(';');
                Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
            })
            .filter(|(name, _)| !name.is_empty())
            .collect())
    }

    /// Runs `jobs` with the shell executor, each in its own copy of the checkout (as on a runner);
    /// `merge_request` makes it an MR pipeline.
    pub fn run(&self, jobs: &[&str], merge_request: bool) -> anyhow::Result<LocalRun> {
        self.run_of(jobs, &PipelineKind::of(merge_request), &[])
    }

    /// Runs `jobs` in a pipeline of `kind` with `extra` variables (which outrank the YAML's, as a
    /// project or group CI/CD variable does in GitLab).
    pub fn run_of(
        &self,
        jobs: &[&str],
        kind: &PipelineKind,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<LocalRun> {
        let mut owned: Vec<String> = [
            "--force-shell-executor",
            "--shell-isolation",
            "--timestamps",
            "--no-color",
        ]
        .map(str::to_owned)
        .to_vec();
        owned.extend(kind.args());
        for (k, v) in extra {
            owned.extend(["--variable".to_owned(), format!("{k}={v}")]);
        }
        owned.extend(jobs.iter().map(|j| (*j).to_owned()));
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        let out = self.gitlab_ci_local(&args)?;
        let output = strip_ansi(&format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        let outcomes = parse_run(&output, jobs);
        Ok(LocalRun {
            ok: out.status.success(),
            output,
            jobs: outcomes,
        })
    }

    /// A file a job exported as an artifact.
    pub fn artifact(&self, job: &str, file: &str) -> anyhow::Result<String> {
        let path = self
            .path()
            .join(".gitlab-ci-local/artifacts")
            .join(job)
            .join(file);
        std::fs::read_to_string(&path)
            .with_context(|| format!("reading artifact {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summary_lines_name_the_job() {
        let text = " WARN  Avoid overriding predefined variables https://x#L15-16 [CI_COMMIT_REF_PROTECTED] as it can\n PASS  [ 395 ms] lint \n FAIL  sast\n[08:41:28  7 ms] lint  starting shell (pre-build)\n[08:41:29 584 ms] lint  finished in 584 ms\n";
        let outcomes = super::parse_run(text, &["lint", "sast"]);
        assert_eq!(outcomes[0].job, "lint");
        assert_eq!(outcomes[0].verdict, "PASS");
        assert_eq!(outcomes[0].seconds, Some(0.584));
        assert_eq!(outcomes[1].verdict, "FAIL");
    }

    /// The host's registry settings reach an isolated pipeline; what could be a credential does not
    /// (npm's documented auth keys, git's credential helper and extra headers, URLs with a user).
    #[test]
    fn dotfiles_keep_settings_and_lose_credentials() {
        let npmrc = "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=npm_SECRET1\n_auth=c2VjcmV0\n//r.example/:_password=U0VDUkVU\nusername=alice\nfund=false\n";
        let kept = super::credential_free(npmrc);
        assert_eq!(kept, "registry=https://registry.npmjs.org/\nfund=false\n");
        let gitconfig = "[user]\n\tname = A\n[credential]\n\thelper = store\n[http]\n\textraheader = Authorization: \\\n  Basic c2VjcmV0\n[url \"https://alice:glpat-SECRET2@gitlab.example/\"]\n\tinsteadOf = https://gitlab.example/\n";
        let kept = super::credential_free(gitconfig);
        for secret in ["SECRET", "c2VjcmV0", "helper", "alice"] {
            assert!(!kept.contains(secret), "{secret} kept in {kept}");
        }
        assert!(kept.contains("name = A"));
        assert!(super::has_userinfo("https://u:p@proxy.example/simple"));
        assert!(!super::has_userinfo("https://proxy.golang.org,direct"));
        assert!(!super::has_userinfo(
            "https://registry.npmjs.org/@scope%2fpkg"
        ));
    }

    #[test]
    fn colour_codes_are_stripped() {
        assert_eq!(
            super::strip_ansi("\u{1b}[32m PASS \u{1b}[39m lint \u{1b}[38;2;171;205;239mx"),
            " PASS  lint x"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(super::duration("lint  finished in 584 ms"), Some(0.584));
        assert_eq!(super::duration("unit-test finished in 1.46 s"), Some(1.46));
        assert_eq!(super::duration("starting shell"), None);
    }
}
