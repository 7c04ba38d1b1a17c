//! The collector's release, for real (docs/adr/0008, decisions 9 and 11). A registry on loopback
//! (Debian's docker-registry) stands in for Harbor's, its users the robots phase 14 created; the
//! project is the one phase 17 seeded. On its protected release tag, under gitlab-ci-local:
//! - build-image: the job's own Vault login and KV read give the ci-push robot; kaniko's executor
//!   (which cannot run on a host) is replaced by a shim that builds with buildah and pushes with the
//!   job's auth file, by digest. The Dockerfile's Rust stage cannot be pulled here: the shim hands
//!   buildah the binary that stage builds (`--build-context build=…`), built here by the same
//!   command; the shipped stage is built as written;
//! - image-scan (trivy, with an empty vulnerability DB: the public one cannot be downloaded here),
//!   image-sbom (syft), sign-image (cosign `hashivault://ci-signing-key` through the real `OpenBao`
//!   transit key of phase 13), release-tag (skopeo): the real tools;
//! - `cosign verify` with the public key phase 16 published in `ConfigMap` cosign-public-key passes
//!   on the release digest and tag, and fails on an unsigned image, on an image carrying another
//!   image's signature, and with another key.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ci_templates::local_run::PipelineKind;
use sandbox::keys::PipelineClaims;
use sandbox::registry::Registry;
use sandbox::support::cargo;

use crate::jobs::JobRunner;
use crate::world::World;

const PROJECT: &str = "dora-collector";

fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tools() -> PathBuf {
    common::config::tools_dir()
}

/// kaniko's executor on a host: the same build and push, with buildah.
fn kaniko_shim(dir: &Path) -> PathBuf {
    let shim = dir.join("kaniko-buildah");
    std::fs::write(
        &shim,
        r#"#!/bin/sh
# kaniko's executor flags, done with buildah (kaniko needs a container): build the Dockerfile's
# shipped stage, push by digest with the job's own auth file.
set -eu
context="" dockerfile="Dockerfile" destination="" digest_file="" labels=""
while [ $# -gt 0 ]; do
  case "$1" in
    --context) context="$2"; shift 2 ;;
    --dockerfile) dockerfile="$2"; shift 2 ;;
    --destination) destination="$2"; shift 2 ;;
    --digest-file) digest_file="$2"; shift 2 ;;
    --label) labels="$labels --label $2"; shift 2 ;;
    *) shift ;;
  esac
done
# Paths of the job (its working directory) stay the job's.
case "$digest_file" in /*) ;; *) digest_file="$PWD/$digest_file" ;; esac
cd "$context"
# shellcheck disable=SC2086
buildah bud --quiet --isolation chroot --build-context "build=$KANIKO_SHIM_BUILD_STAGE" $labels -f "$dockerfile" -t "$destination" .
buildah push --quiet --tls-verify=false --authfile "$KANIKO_DOCKER_CONFIG/config.json" --digestfile "$digest_file" "$destination" "docker://$destination"
buildah rmi "$destination" >/dev/null
"#,
    )
    .expect("write");
    let mut perms = std::fs::metadata(&shim).expect("shim").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&shim, perms).expect("chmod");
    shim
}

/// The binary the Dockerfile's first stage builds, built here by the same command.
fn build_stage(world: &World, project_dir: &Path) -> PathBuf {
    let target = sandbox::support::target_dir(env!("CARGO_TARGET_TMPDIR")).join("demo-projects");
    run(
        cargo()
            .args([
                "build",
                "--quiet",
                "--release",
                "--locked",
                "--offline",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .current_dir(project_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        "building the collector's project standalone (its Dockerfile's first stage)",
    );
    let stage = world.dir("collector-stage");
    std::fs::create_dir_all(stage.join("out")).expect("mkdir");
    std::fs::copy(
        target
            .join("x86_64-unknown-linux-gnu/release")
            .join(PROJECT),
        stage.join("out").join(PROJECT),
    )
    .expect("the static binary");
    stage
}

/// Trivy's cache with the empty vulnerability DB, fresh (trivy downloads a DB it thinks stale).
fn trivy_cache(world: &World) -> PathBuf {
    let cache = world.dir("trivy-cache");
    std::fs::create_dir_all(cache.join("db")).expect("mkdir");
    let source = tools().join("trivy-db/db");
    std::fs::copy(source.join("trivy.db"), cache.join("db/trivy.db"))
        .expect("the empty DB (./scripts/setup-test-env.sh builds it)");
    let mut meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(source.join("metadata.json")).expect("metadata"),
    )
    .expect("JSON");
    let now = run(
        Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "date",
    );
    meta["DownloadedAt"] = serde_json::json!(now.trim());
    std::fs::write(cache.join("db/metadata.json"), meta.to_string()).expect("write");
    cache
}

fn cosign() -> PathBuf {
    tools().join("go-bin/cosign")
}

pub fn the_collector_release_is_built_signed_and_verified(world: &World) {
    let users: Vec<(String, String)> = ["ci-push", "ci-scratch-push", "argocd-pull", "trivy-scan"]
        .iter()
        .map(|r| world.robot(r))
        .collect();
    let registry = Registry::start(&world.dir("registry"), &users).expect("docker-registry");
    let tag = obs_release_tag(world);
    let work = world.dir("release");
    let shim = kaniko_shim(&work);
    let docker_config = world.dir("cosign-docker-config");
    let runner = JobRunner::new(
        world,
        PROJECT,
        false,
        &[
            ("HARBOR_REGISTRY", registry.host.clone()),
            ("KANIKO_EXECUTOR", shim.display().to_string()),
            ("REGISTRY_TLS_VERIFY", "false".into()),
            ("TRIVY_INSECURE", "true".into()),
            ("TRIVY_CACHE_DIR", trivy_cache(world).display().to_string()),
            ("SYFT_REGISTRY_INSECURE_USE_HTTP", "true".into()),
            ("DOCKER_CONFIG", docker_config.display().to_string()),
        ],
    );
    let project_dir = runner.repo.path().to_path_buf();
    // hadolint: no finding on the Dockerfile as pushed.
    run(
        Command::new(tools().join("venv/bin/hadolint")).arg(project_dir.join("Dockerfile")),
        "hadolint Dockerfile",
    );
    let stage = build_stage(world, &project_dir);
    let kind = PipelineKind::ReleaseTag(tag.clone());
    let claims = PipelineClaims::tag(&tag, true);
    let extra = vec![("KANIKO_SHIM_BUILD_STAGE", stage.display().to_string())];

    let (build, _) = runner.run(world, "build-image", &kind, &claims, &extra);
    assert_eq!(build.verdict("build-image"), "PASS", "{}", build.output);
    let digest = runner
        .repo
        .artifact("build-image", "image.digest")
        .unwrap_or_else(|e| panic!("{e}: {}", build.output))
        .trim()
        .to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let repository = format!("{}/platform-services/{PROJECT}", registry.host);
    let by_digest = format!("{repository}@{digest}");
    let (push_user, push_secret) = world.robot("ci-push");
    assert!(
        !build.output.contains(&push_secret),
        "the robot's secret in the job log"
    );

    let mut with_digest = extra.clone();
    with_digest.push(("IMAGE_DIGEST", digest.clone()));
    for job in ["image-scan", "image-sbom", "sign-image", "release-tag"] {
        let (result, _) = runner.run(world, job, &kind, &claims, &with_digest);
        assert_eq!(result.verdict(job), "PASS", "{job}:\n{}", result.output);
        assert!(
            !result.output.contains(&push_secret),
            "{job}: a secret in the log"
        );
    }
    let scan = runner
        .repo
        .artifact("image-scan", "trivy-image.json")
        .expect("trivy's report");
    assert!(
        scan.contains(&digest) || scan.contains(PROJECT),
        "trivy scanned the image: {scan}"
    );
    let sbom = runner
        .repo
        .artifact("image-sbom", "sbom-image.cdx.json")
        .expect("the SBOM");
    assert!(sbom.contains("CycloneDX"), "{sbom}");

    // Verification, as the admission policy does it: the key phase 16 published.
    let key = world.dir("keys").join("cosign.pub");
    std::fs::write(&key, published_key(world)).expect("write the key");
    let login = |config: &Path| {
        let mut child = Command::new(cosign())
            .args([
                "login",
                &registry.host,
                "--username",
                &push_user,
                "--password-stdin",
            ])
            .env("DOCKER_CONFIG", config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cosign");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(push_secret.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    let verifier = world.dir("verifier-config");
    login(&verifier);
    let verify = |reference: &str, key: &Path| {
        Command::new(cosign())
            .args(["verify", "--insecure-ignore-tlog=true", "--key"])
            .arg(key)
            .arg(reference)
            .env("DOCKER_CONFIG", &verifier)
            .output()
            .expect("cosign verify")
    };
    let ok = verify(&by_digest, &key);
    assert!(
        ok.status.success(),
        "the release digest verifies: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let by_tag = format!("{repository}:{tag}");
    let ok = verify(&by_tag, &key);
    assert!(
        ok.status.success(),
        "the release tag verifies: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // An image nobody signed, pushed next to it.
    let unsigned = format!("{repository}:unsigned");
    let context = world.dir("unsigned-image");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY note /note\nUSER 65532:65532\n",
    )
    .unwrap();
    std::fs::write(context.join("note"), "not built by the pipeline\n").unwrap();
    run(
        Command::new("buildah")
            .args(["bud", "--quiet", "--isolation", "chroot", "-t", &unsigned])
            .arg(&context),
        "buildah bud (unsigned)",
    );
    let digest_file = context.join("digest");
    run(
        Command::new("buildah")
            .args(["push", "--quiet", "--tls-verify=false", "--authfile"])
            .arg(verifier.join("config.json"))
            .arg("--digestfile")
            .arg(&digest_file)
            .args([&unsigned, &format!("docker://{unsigned}")]),
        "buildah push (unsigned)",
    );
    let _ = Command::new("buildah").args(["rmi", &unsigned]).output();
    let unsigned_digest = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_owned();
    let refused = verify(&format!("{repository}@{unsigned_digest}"), &key);
    assert!(
        !refused.status.success(),
        "an unsigned image must not verify"
    );
    // The release's signature copied onto that image: the payload names another digest.
    let signature_tag = |d: &str| format!("{repository}:{}.sig", d.replace(':', "-"));
    run(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--authfile",
            ])
            .arg(verifier.join("config.json"))
            .arg(format!("docker://{}", signature_tag(&digest)))
            .arg(format!("docker://{}", signature_tag(&unsigned_digest))),
        "skopeo copy (the signature onto another image)",
    );
    let refused = verify(&format!("{repository}@{unsigned_digest}"), &key);
    assert!(
        !refused.status.success(),
        "a signature of another image must not verify"
    );
    // Another key.
    let other = world.dir("other-key");
    run(
        Command::new(cosign())
            .args(["generate-key-pair"])
            .current_dir(&other)
            .env("COSIGN_PASSWORD", ""),
        "cosign generate-key-pair",
    );
    let refused = verify(&by_digest, &other.join("cosign.pub"));
    assert!(!refused.status.success(), "another key must not verify");
    eprintln!(
        "    {by_tag} = {digest}: built by buildah, scanned, SBOM, signed through OpenBao transit, verified with phase 16's key; pushed as {push_user}; an unsigned image, another image's signature and another key are refused"
    );
}

/// The tag phase 17 deploys the collector at (its production overlay's `newTag`).
fn obs_release_tag(world: &World) -> String {
    let files = world.project_files(&format!("{}/{PROJECT}", crate::world::GROUP), "main");
    let production = files
        .get("deploy/overlays/production/kustomization.yaml")
        .expect("the collector's production overlay");
    let tag = production
        .lines()
        .find_map(|l| l.trim().strip_prefix("newTag:"))
        .expect("a release tag in the production overlay")
        .trim()
        .trim_matches('"')
        .to_owned();
    let gl = world.sandbox.gitlab.as_ref().unwrap().lock();
    let project = gl
        .project_by_path(&format!("{}/{PROJECT}", crate::world::GROUP))
        .unwrap();
    assert!(
        project.repository.tags.contains_key(&tag),
        "phase 17 tagged {tag}: its pipeline is the image's producer"
    );
    tag
}

/// The public key phase 16 published.
fn published_key(world: &World) -> String {
    let out = run(
        Command::new("kubectl")
            .args(["get", "configmap", "-A", "-o", "json", "--field-selector"])
            .arg(format!(
                "metadata.name={}",
                security_setup::desired::COSIGN_CONFIGMAP
            ))
            .env("KUBECONFIG", world.sandbox.kubeconfig()),
        "kubectl get configmap cosign-public-key",
    );
    let list: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    list["items"][0]["data"][security_setup::desired::COSIGN_CONFIGMAP_KEY]
        .as_str()
        .expect("phase 16 published the signing key")
        .to_owned()
}
