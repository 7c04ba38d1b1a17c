//! The collector's image as its release pipeline builds it: the rendered project alone (no
//! workspace; `common` carried in `common/`), a static binary built `--locked` from the project's
//! own lock file, the Dockerfile linted by hadolint and built by buildah `FROM scratch`, the
//! binary taken out of the image and run.
//!
//! The Dockerfile's first stage (`rust:…` image) cannot be pulled here, so buildah gets the
//! binary that stage would produce through `--build-context build=<dir>`: the named context
//! replaces the stage, and the second stage — the image that ships — is built exactly as written.
//! The binary is produced by the command the first stage runs (as demo-apps' image test does).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use obs_setup::desired::COLLECTOR;
use obs_setup::settings::Settings;
use sandbox::support::cargo;
use serde_json::{Value, json};

use crate::{rendered_project, target_dir};

fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A plain HTTP GET; true on `200`.
fn http_get_ok(port: u16, path: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_collector_builds_standalone_into_a_scratch_image_that_passes_hadolint() {
    let rendered = rendered_project(&Settings::example());
    let dir = rendered.path().join(COLLECTOR);

    // hadolint: no finding at any level.
    let hadolint = common::config::tools_dir().join("venv/bin/hadolint");
    run(
        Command::new(&hadolint).arg(dir.join("Dockerfile")),
        "hadolint dora-collector/Dockerfile",
    );

    // The first stage's work, done here: the project alone, --locked, static.
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
            .current_dir(&dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            // Shared with the arcade's image builds and kept between runs (build cache only).
            .env("CARGO_TARGET_DIR", target_dir().join("demo-projects"))
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        "building the collector's project standalone (a stale lock file: run scripts/demo-lockfiles.sh)",
    );
    let binary = target_dir()
        .join("demo-projects/x86_64-unknown-linux-gnu/release")
        .join(COLLECTOR);
    let ldd = Command::new("ldd").arg(&binary).output().unwrap();
    let ldd_text =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd_text.contains("not a dynamic executable") || ldd_text.contains("statically linked"),
        "static binary expected, ldd says {ldd_text}"
    );
    let stage = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(stage.path().join("out")).unwrap();
    std::fs::copy(&binary, stage.path().join("out").join(COLLECTOR)).unwrap();

    // buildah: the shipped stage exactly as written.
    let tag = format!(
        "localhost/cicd-buildout-test/{COLLECTOR}:{}",
        std::process::id()
    );
    run(
        Command::new("buildah")
            .args(["bud", "--quiet", "--isolation", "chroot", "--build-context"])
            .arg(format!("build={}", stage.path().display()))
            .args(["-t", &tag, "-f"])
            .arg(dir.join("Dockerfile"))
            .arg(&dir),
        "buildah bud dora-collector",
    );
    let inspect: Value = serde_json::from_str(&run(
        Command::new("buildah").args(["inspect", "--type", "image", &tag]),
        "buildah inspect",
    ))
    .unwrap();
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532", "non-root");
    assert_eq!(
        config["Entrypoint"],
        json!(["/usr/local/bin/dora-collector"]),
        "the path the Deployment's command runs"
    );
    assert_eq!(
        inspect["OCIv1"]["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "one layer on scratch"
    );

    // The image's only file is the binary, and it runs.
    let archive = tempfile::tempdir().unwrap();
    let tar = archive.path().join("image.tar");
    run(
        Command::new("buildah")
            .args(["push", "--quiet", &tag])
            .arg(format!("oci-archive:{}", tar.display())),
        "buildah push oci-archive",
    );
    run(Command::new("buildah").args(["rmi", &tag]), "buildah rmi");
    let unpacked = archive.path().join("oci");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&unpacked),
        "untar the archive",
    );
    let blob = |digest: &str| {
        unpacked
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(unpacked.join("index.json")).unwrap())
            .unwrap();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let rootfs = archive.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    run(
        Command::new("tar")
            .arg("-xf")
            .arg(blob(layers[0]["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&rootfs),
        "unpack the layer",
    );
    assert_eq!(
        files_under(&rootfs),
        ["usr/local/bin/dora-collector"],
        "the image holds the binary only"
    );

    // The settings the Deployment gives it: the webhook secret and a store; /healthz answers.
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(rootfs.join("usr/local/bin/dora-collector"))
        .env_clear()
        .env("GITLAB_WEBHOOK_SECRET", "image-test-webhook-secret")
        .env(
            "DORA_STORE_URL",
            format!("sqlite://{}/dora.db", data.path().display()),
        )
        .env("DORA_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(data.path().join("stderr")).unwrap())
        .spawn()
        .expect("the image's binary runs on this host");
    // Live at once; ready when the store has been replayed (a moment later).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut healthy, mut ready) = (false, false);
    while Instant::now() < deadline && !ready {
        healthy = healthy || http_get_ok(port, "/healthz");
        ready = healthy && http_get_ok(port, "/readyz");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(data.path().join("stderr")).unwrap_or_default();
    assert!(healthy, "the collector answered /healthz; its log:\n{log}");
    assert!(ready, "and /readyz on its SQLite store; its log:\n{log}");
    assert!(
        data.path().join("dora.db").exists(),
        "the store is where DORA_STORE_URL says"
    );
}
