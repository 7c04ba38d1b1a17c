//! Running one library job of a seeded project under gitlab-ci-local as its pipeline would: the
//! project as the GitLab stand-in holds it, the group CI/CD variables phase 14 set, GitLab's
//! predefined variables for the pipeline kind, and an `id_token` for that kind signed by the GitLab
//! stand-in's key. The tools after the Vault login are test doubles that record what they were
//! handed (`stubs`), or the real ones (the release step).

use std::path::{Path, PathBuf};

use ci_templates::local_run::{LocalRepo, LocalRun, PipelineKind};
use sandbox::keys::PipelineClaims;

use crate::world::{GROUP, World};

/// Test doubles of the tools that come after the login: each records what it was handed.
pub fn write_stubs(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let python = common::config::tools_dir().join("venv/bin/python");
    let stubs: [(&str, String); 8] = [
        // The HTTP clients the library's gates use, their arguments recorded: what any process of
        // the job's pod could read in /proc/<pid>/cmdline. No secret may be among them.
        (
            "curl",
            "#!/bin/sh\nprintf 'curl %s\\n' \"$*\" >> \"$STUB_LOG.argv\"\nexec /usr/bin/curl \"$@\"\n".to_owned(),
        ),
        (
            "wget",
            "#!/bin/sh\nprintf 'wget %s\\n' \"$*\" >> \"$STUB_LOG.argv\"\nexec /usr/bin/wget \"$@\"\n".to_owned(),
        ),
        (
            "kaniko-executor",
            r#"#!/bin/sh
# kaniko's executor: records the registry credentials of the job's auth file and the destination.
set -eu
dest="" digest_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --destination) dest="$2"; shift 2 ;;
    --digest-file) digest_file="$2"; shift 2 ;;
    *) shift ;;
  esac
done
auth="$(sed -n 's/.*"auth":"\([^"]*\)".*/\1/p' "$KANIKO_DOCKER_CONFIG/config.json" | base64 -d)"
echo "kaniko user=${auth%%:*} pass_sha=$(printf '%s' "${auth#*:}" | sha256sum | cut -d' ' -f1) destination=$dest" >> "$STUB_LOG"
printf 'sha256:%s' "$(printf '%s' "$dest" | sha256sum | cut -d' ' -f1)" > "$digest_file"
"#
            .to_owned(),
        ),
        (
            "trivy",
            r#"#!/bin/sh
set -eu
out="" ref=""
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out="$2"; shift 2 ;;
    --severity|--format) shift 2 ;;
    *) ref="$1"; shift ;;
  esac
done
echo "trivy user=$TRIVY_USERNAME pass_sha=$(printf '%s' "$TRIVY_PASSWORD" | sha256sum | cut -d' ' -f1) ref=$ref" >> "$STUB_LOG"
echo '{"Results":[]}' > "$out"
"#
            .to_owned(),
        ),
        (
            "syft",
            r#"#!/bin/sh
set -eu
for a in "$@"; do case "$a" in cyclonedx-json=*) out="${a#cyclonedx-json=}" ;; registry:*) ref="${a#registry:}" ;; esac; done
echo "syft user=$SYFT_REGISTRY_AUTH_USERNAME pass_sha=$(printf '%s' "$SYFT_REGISTRY_AUTH_PASSWORD" | sha256sum | cut -d' ' -f1) ref=$ref" >> "$STUB_LOG"
echo '{}' > "$out"
"#
            .to_owned(),
        ),
        (
            "cosign",
            r#"#!/bin/sh
# cosign: login records the credentials; sign asks Vault's transit engine to sign with the
# job's token (what cosign's hashivault:// provider does), so a token without the right fails.
set -eu
case "$1" in
  login)
    pass="$(cat)"
    echo "cosign-login registry=$2 user=$4 pass_sha=$(printf '%s' "$pass" | sha256sum | cut -d' ' -f1)" >> "$STUB_LOG" ;;
  sign)
    for a in "$@"; do ref="$a"; done
    # The real curl, unrecorded: cosign's provider calls Vault in-process, with no arguments to see.
    status="$(/usr/bin/curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $VAULT_TOKEN" \
      --data '{"input":"c2lnbmVkIGJ5IHRoZSBqb3VybmV5"}' "$VAULT_ADDR/v1/transit/sign/ci-signing-key/sha2-256")"
    echo "cosign-sign ref=$ref transit=$status" >> "$STUB_LOG"
    [ "$status" = 200 ] ;;
esac
"#
            .to_owned(),
        ),
        (
            "skopeo",
            r#"#!/bin/sh
set -eu
authfile="" dst=""
while [ $# -gt 0 ]; do
  case "$1" in
    --authfile) authfile="$2"; shift 2 ;;
    docker://*) dst="$1"; shift ;;
    *) shift ;;
  esac
done
auth="$(sed -n 's/.*"auth":"\([^"]*\)".*/\1/p' "$authfile" | base64 -d)"
echo "skopeo user=${auth%%:*} pass_sha=$(printf '%s' "${auth#*:}" | sha256sum | cut -d' ' -f1) destination=$dst" >> "$STUB_LOG"
"#
            .to_owned(),
        ),
        (
            "argocd",
            format!(
                r#"#!{python}
"""The argocd CLI's calls, over Argo CD's REST API (the CLI speaks gRPC-web to the same server)."""
import json, os, sys, urllib.request, urllib.error
import yaml

args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
server = "http://" + opt("--server")
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server + path, data=data, method=method,
        headers={{"Authorization": "Bearer " + os.environ["ARGOCD_AUTH_TOKEN"], "Content-Type": "application/json"}})
    try:
        with urllib.request.urlopen(req) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(f"argocd {{method}} {{path}} -> {{status}}\n")
    if status >= 300:
        sys.exit(f"argocd: {{method}} {{path}}: {{status}} {{text}}")
    return json.loads(text or "{{}}")
verb = args[1]
if verb == "create":
    app = yaml.safe_load(open(opt("--file")))
    call("POST", "/api/v1/applications" + ("?upsert=true" if "--upsert" in args else ""), app)
elif verb == "sync":
    call("POST", f"/api/v1/applications/{{args[2]}}/sync", {{}})
elif verb == "wait":
    call("GET", f"/api/v1/applications/{{args[2]}}")
elif verb == "delete":
    call("DELETE", f"/api/v1/applications/{{args[2]}}?cascade=true")
"#,
                python = python.display()
            ),
        ),
    ];
    for (name, text) in stubs {
        let path = bin.join(name);
        std::fs::write(&path, text).expect("stub");
        let mut perms = std::fs::metadata(&path).expect("stub").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("chmod");
    }
    bin
}

/// One seeded project, ready to run its jobs.
pub struct JobRunner {
    pub repo: LocalRepo,
    pub path: String,
    pub work: PathBuf,
    pub log: PathBuf,
    base: Vec<(String, String)>,
}

impl JobRunner {
    /// `project` (a project of the platform group) with the tool doubles first on the PATH when
    /// `stubs`; `overrides` replace group variables (e.g. a registry reached another way here).
    pub fn new(world: &World, project: &str, stubs: bool, overrides: &[(&str, String)]) -> Self {
        let path = format!("{GROUP}/{project}");
        let project_id = world.project_id(&path);
        let work = world.dir(&format!(
            "jobs-{project}-{}",
            if stubs { "stubs" } else { "tools" }
        ));
        let checkout = work.join(project);
        world.checkout(&path, "main", &checkout);
        let bin = write_stubs(&work);
        let mut repo =
            LocalRepo::prepare(&checkout).expect("the seeded project in a scratch repository");
        if stubs {
            repo = repo.with_path_first(&bin);
        }
        let log = work.join("stub.log");
        let argocd = url::Url::parse(world.get("ARGOCD_URL")).expect("ARGOCD_URL");
        let gitlab = world.get("GITLAB_URL").trim_end_matches('/').to_owned();
        let mut base: Vec<(String, String)> = world.group_variables();
        // The Argo CD server name resolves to the stand-in here.
        base.retain(|(k, _)| k != "ARGOCD_SERVER");
        base.extend([
            (
                "ARGOCD_SERVER".into(),
                format!("{}:{}", argocd.host_str().unwrap(), argocd.port().unwrap()),
            ),
            ("CI_PROJECT_ID".into(), project_id.to_string()),
            ("CI_PROJECT_PATH".into(), path.clone()),
            ("CI_PROJECT_URL".into(), format!("{gitlab}/{path}")),
            ("CI_API_V4_URL".into(), format!("{gitlab}/api/v4")),
            (
                "CI_PIPELINE_URL".into(),
                format!("{gitlab}/{path}/-/pipelines/1001"),
            ),
            ("STUB_LOG".into(), log.display().to_string()),
        ]);
        if stubs {
            base.push((
                "KANIKO_EXECUTOR".into(),
                bin.join("kaniko-executor").display().to_string(),
            ));
        }
        for (key, value) in overrides {
            base.retain(|(k, _)| k != key);
            base.push(((*key).to_owned(), value.clone()));
        }
        Self {
            repo,
            path,
            work,
            log,
            base,
        }
    }

    /// The value of a variable the jobs get.
    pub fn variable(&self, key: &str) -> Option<&str> {
        self.base
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Runs `job` in a pipeline of `kind` with an `id_token` for `claims` and `extra` variables;
    /// returns the run and what the test doubles recorded.
    pub fn run(
        &self,
        world: &World,
        job: &str,
        kind: &PipelineKind,
        claims: &PipelineClaims,
        extra: &[(&str, String)],
    ) -> (LocalRun, String) {
        std::fs::write(&self.log, "").expect("reset the stub log");
        let docker_config = self.work.join(format!("docker-{job}"));
        std::fs::create_dir_all(&docker_config).expect("mkdir");
        let mut vars = self.base.clone();
        vars.push(("VAULT_ID_TOKEN".into(), world.id_token(&self.path, claims)));
        vars.push((
            "KANIKO_DOCKER_CONFIG".into(),
            docker_config.display().to_string(),
        ));
        for (k, v) in extra {
            vars.retain(|(key, _)| key != k);
            vars.push(((*k).to_owned(), v.clone()));
        }
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let run = self
            .repo
            .run_of(&[job], kind, &refs)
            .expect("gitlab-ci-local runs");
        let evidence = std::fs::read_to_string(&self.log).unwrap_or_default();
        let argv_log = PathBuf::from(format!("{}.argv", self.log.display()));
        let argv = std::fs::read_to_string(&argv_log).unwrap_or_default();
        let _ = std::fs::remove_file(&argv_log);
        let id_token = vars
            .iter()
            .find(|(k, _)| k == "VAULT_ID_TOKEN")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        // The credentials a job handles, by value: the id_token, the robots, the Argo CD and
        // promotion tokens; and the header and body shapes that carry any other (Vault's own
        // client token, whose value the test never sees).
        let mut secrets: Vec<(&str, String)> = vec![("the id_token", id_token.to_owned())];
        for robot in ["ci-push", "ci-scratch-push"] {
            secrets.push(("a robot secret", world.robot(robot).1));
        }
        let project_id = world.project_id(&self.path);
        for (what, path) in [
            (
                "the Argo CD token",
                common::contract::KV_ARGOCD_TOKEN.to_owned(),
            ),
            (
                "the promotion token",
                common::contract::kv_promote_token(project_id),
            ),
        ] {
            if let Some(token) = world.kv_field(&path, "token") {
                secrets.push((what, token));
            }
        }
        assert!(
            secrets.len() >= 4,
            "{job}: the known secrets: {}",
            secrets.len()
        );
        let head = |line: &str| {
            line.split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" ")
        };
        for line in argv.lines() {
            for marker in ["X-Vault-Token", "PRIVATE-TOKEN", "\"jwt\"", "Authorization"] {
                assert!(
                    !line.contains(marker),
                    "{job}: a credential header or body ({marker}) among a process's arguments: {}",
                    head(line)
                );
            }
            for (what, value) in &secrets {
                assert!(
                    !line.contains(value.as_str()),
                    "{job}: {what} among a process's arguments: {}",
                    head(line)
                );
            }
        }
        let calls = argv.lines().count();
        let evidence = if calls == 0 {
            evidence
        } else {
            format!("{evidence}http-calls={calls} (no secret in their arguments)\n")
        };
        (run, evidence)
    }
}
