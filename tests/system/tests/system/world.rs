//! The shared sandbox: phases 12–18 applied in the driver's order, then applied again with zero
//! changes and zero writes; and what the steps need to read from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sandbox::keys::{PipelineClaims, ci_id_token_claims};
use sandbox::{Options, Sandbox};
use serde_json::{Value, json};

/// The phase binaries (package, binary) in the driver's order (scripts/deploy-cluster.sh --from 12).
pub const PHASES: [(&str, &str); 8] = [
    ("gitlab-harden", "gitlab-harden"),
    ("gitlab-harden", "sop-wiki"),
    ("vault-cicd", "vault-cicd"),
    ("ci-templates", "ci-templates"),
    ("argo-delivery", "argo-delivery"),
    ("security-setup", "security-setup"),
    ("obs-setup", "obs-setup"),
    ("demo-apps", "demo-apps"),
];

/// The platform group of the seeded projects.
pub const GROUP: &str = "platform_services";

/// What [`World::writes`] counts: stand-in writes, Vault writes, watched resourceVersions.
pub type Writes = (BTreeMap<&'static str, u64>, usize, Vec<Option<String>>);

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub sandbox: Sandbox,
    /// Scratch space for this run (repositories, registries, keys).
    pub scratch: tempfile::TempDir,
    /// What the platform's bash phases had left before ours ran (docs/adr/0010).
    pub bash: crate::leftovers::Planted,
}

fn phase_binary(package: &str, bin: &str) -> PathBuf {
    sandbox::support::workspace_bin(package, bin, env!("CARGO_TARGET_TMPDIR"))
}

impl World {
    pub fn start() -> Self {
        common::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let sandbox = rt
            // Prometheus: the flag sidecar's gauges (onboarding step).
            .block_on(Sandbox::start(Options::default()))
            .expect("the sandbox starts");
        // The platform's bash phases 12–18 ran here before ours (docs/adr/0010).
        let token_secret_uid = rt.block_on(crate::leftovers::plant(&sandbox));
        let mut world = Self {
            rt,
            sandbox,
            scratch: tempfile::Builder::new()
                .prefix("cicd-system-")
                .tempdir()
                .expect("a scratch directory"),
            bash: crate::leftovers::Planted {
                token_secret_uid,
                reported: std::collections::BTreeSet::new(),
            },
        };
        let binaries: Vec<(&str, PathBuf)> = PHASES
            .iter()
            .map(|(package, bin)| (*bin, phase_binary(package, bin)))
            .collect();
        // The driver's run: each phase reports the bash leftovers it found (writing nothing),
        // then applies.
        let kube = world.kube();
        let watched = crate::leftovers::watched();
        for (name, exe) in &binaries {
            let writes = world.sandbox.standin_writes();
            let vault = world.sandbox.vault_writes();
            let versions = world
                .rt
                .block_on(sandbox::support::resource_versions(&kube, &watched));
            let report = world.phase(exe, &["plan", "--adopt-report", "--output", "json"]);
            assert_eq!(
                report.code, 0,
                "{name} --adopt-report failed:\n{}",
                report.stderr
            );
            assert_eq!(
                world.sandbox.standin_writes(),
                writes,
                "{name}: the report wrote"
            );
            assert_eq!(
                world.sandbox.vault_writes(),
                vault,
                "{name}: the report wrote"
            );
            assert_eq!(
                world
                    .rt
                    .block_on(sandbox::support::resource_versions(&kube, &watched)),
                versions,
                "{name}: the report wrote to Kubernetes"
            );
            for (action, object) in crate::leftovers::report_rows(&report.stdout) {
                world
                    .bash
                    .reported
                    .insert(((*name).to_owned(), action, object));
            }
            let run = world.phase(exe, &["apply"]);
            assert_eq!(
                run.code, 0,
                "{name} apply failed:\n{}\n{}",
                run.stdout, run.stderr
            );
        }
        // The rerun: every plan empty, nothing written anywhere.
        let writes = world.sandbox.standin_writes();
        let vault = world.sandbox.vault_writes();
        for (name, exe) in &binaries {
            let run = world.phase(exe, &["apply", "--output", "json"]);
            assert_eq!(run.code, 0, "{name} rerun failed:\n{}", run.stderr);
            let doc: Value = serde_json::from_str(&run.stdout)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {}", run.stdout));
            assert_eq!(
                doc["changes"],
                json!([]),
                "{name}: the rerun planned changes"
            );
            assert_eq!(doc["applied"], 0, "{name}");
        }
        assert_eq!(
            world.sandbox.standin_writes(),
            writes,
            "the rerun wrote to a stand-in"
        );
        assert_eq!(
            world.sandbox.vault_writes(),
            vault,
            "the rerun wrote to Vault"
        );
        eprintln!(
            "    phases 12, 12b, 13–18 applied over the bash phases' leftovers; the rerun made 0 changes and 0 writes"
        );
        world
    }

    /// Writes done by every stand-in so far, sign-ins aside.
    pub fn standin_writes(&self) -> BTreeMap<&'static str, u64> {
        self.sandbox.standin_writes()
    }

    /// Everything a read-only command could have written: each stand-in (sign-ins aside),
    /// OpenBao (its audit log), and the resourceVersions of `watched` Kubernetes objects.
    pub fn writes(&self, watched: &[Value]) -> Writes {
        let kube = self.kube();
        (
            self.standin_writes(),
            self.sandbox.vault_writes(),
            self.rt
                .block_on(sandbox::support::resource_versions(&kube, watched)),
        )
    }

    /// Runs a binary of the workspace with the sandbox's settings.
    pub fn run_binary(&self, exe: &Path, args: &[&str]) -> sandbox::PhaseRun {
        self.phase(exe, args)
    }

    /// Runs one phase binary (package, binary) with the sandbox's settings.
    pub fn run_phase(&self, package: &str, bin: &str, args: &[&str]) -> sandbox::PhaseRun {
        self.phase(&phase_binary(package, bin), args)
    }

    fn phase(&self, exe: &Path, args: &[&str]) -> sandbox::PhaseRun {
        self.rt.block_on(sandbox::run_phase_binary(
            exe.to_str().expect("utf-8 path"),
            &self.sandbox.env_file(),
            args,
            &[("CICD_CRD_WAIT_SECS", "30")],
        ))
    }

    pub fn get(&self, name: &str) -> &str {
        self.sandbox.get(name)
    }

    /// A fresh directory under the scratch space.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.scratch.path().join(name);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    /// Files of a project's branch as the GitLab stand-in has them.
    pub fn project_files(&self, path: &str, branch: &str) -> BTreeMap<String, String> {
        let gl = self
            .sandbox
            .gitlab
            .as_ref()
            .expect("in-process GitLab")
            .lock();
        let project = gl
            .project_by_path(path)
            .unwrap_or_else(|| panic!("project {path} was not seeded"));
        project
            .repository
            .branch_files(Some(branch))
            .cloned()
            .unwrap_or_else(|| panic!("{path} has no branch {branch}"))
    }

    pub fn project_id(&self, path: &str) -> u64 {
        let gl = self
            .sandbox
            .gitlab
            .as_ref()
            .expect("in-process GitLab")
            .lock();
        gl.project_by_path(path)
            .unwrap_or_else(|| panic!("project {path} was not seeded"))
            .id
    }

    /// Writes a project's files into `dir`.
    pub fn checkout(&self, path: &str, branch: &str, dir: &Path) {
        for (file, contents) in self.project_files(path, branch) {
            let target = dir.join(&file);
            std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir");
            std::fs::write(target, contents).expect("write");
        }
    }

    /// The group's CI/CD variables as phase 14 set them (what every pipeline of the group sees).
    pub fn group_variables(&self) -> Vec<(String, String)> {
        let gl = self
            .sandbox
            .gitlab
            .as_ref()
            .expect("in-process GitLab")
            .lock();
        let group = gl.group_by_path(GROUP).expect("the platform group");
        group
            .variables
            .iter()
            .map(|v| {
                (
                    v["key"].as_str().unwrap_or_default().to_owned(),
                    v["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// An `id_token` for a job of `project_path` in a pipeline, signed by the GitLab stand-in's key
    /// for the audience the roles bind (`VAULT_ADDR`).
    pub fn id_token(&self, project_path: &str, pipeline: &PipelineClaims) -> String {
        let claims = ci_id_token_claims(
            self.get("GITLAB_URL"),
            self.get("VAULT_ADDR"),
            project_path,
            self.project_id(project_path),
            pipeline,
        );
        self.sandbox
            .gitlab_signing_key()
            .sign_jwt(&claims)
            .expect("signing")
    }

    /// `POST auth/<JWT_MOUNT>/login`: the status and `OpenBao`'s answer.
    pub fn vault_login(&self, role: &str, jwt: &str) -> (u16, Value) {
        self.rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!(
                    "{}/v1/auth/{}/login",
                    self.get("VAULT_ADDR"),
                    common::contract::JWT_MOUNT
                ))
                .json(&json!({"role": role, "jwt": jwt}))
                .send()
                .await
                .expect("OpenBao answers");
            (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
        })
    }

    pub fn kube(&self) -> common::kube::KubeClient {
        self.rt
            .block_on(common::kube::KubeClient::from_kubeconfig(
                &self.sandbox.kubeconfig(),
                "system-tests",
            ))
            .expect("kube client")
    }

    /// A live object, or None.
    pub fn live(&self, object: &Value) -> Option<Value> {
        let kube = self.kube();
        self.rt.block_on(kube.get(object)).expect("kube get")
    }

    /// The secret of a Harbor robot (its full name, `robot$<name>`) as the stand-in issued it.
    pub fn robot(&self, name: &str) -> (String, String) {
        let harbor = self
            .sandbox
            .harbor
            .as_ref()
            .expect("in-process Harbor")
            .lock();
        let robot = harbor
            .robot_by_name(&format!("robot${name}"))
            .unwrap_or_else(|| panic!("robot {name} was not created by phase 14"));
        (robot.name.clone(), robot.secret.clone())
    }

    /// One string field of a KV v2 secret under `kv/`, read with the sandbox's root token.
    pub fn kv_field(&self, path: &str, field: &str) -> Option<String> {
        self.rt.block_on(async {
            let answer: Value = reqwest::Client::new()
                .get(format!("{}/v1/kv/data/{path}", self.get("VAULT_ADDR")))
                .header("X-Vault-Token", self.get("VAULT_TOKEN"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            answer["data"]["data"][field].as_str().map(str::to_owned)
        })
    }

    /// Harbor's registry host as the phases name images (the stand-in's `host:port`).
    pub fn harbor_registry(&self) -> String {
        let url = url::Url::parse(self.get("HARBOR_URL")).expect("HARBOR_URL");
        format!(
            "{}:{}",
            url.host_str().expect("host"),
            url.port_or_known_default().expect("port")
        )
    }
}

/// `kubectl kustomize DIR`.
pub fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (kustomize) on PATH");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The documents of a multi-document YAML stream.
pub fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("YAML"))
        .collect()
}

/// Lower-case hex SHA-256 (to compare secrets without printing them).
pub fn sha256(text: &str) -> String {
    let digest = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&digest.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
