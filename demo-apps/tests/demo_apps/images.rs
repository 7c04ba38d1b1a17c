//! Each project as its pipeline builds it: the rendered files alone (no workspace), a static
//! binary built `--locked` from the project's own lock file, the Dockerfile linted by hadolint and
//! built by buildah `FROM scratch`, and the binary taken out of the image and run.
//!
//! The Dockerfile's first stage (`rust:…` image) cannot be pulled here, so buildah gets the
//! binary that stage would produce through `--build-context build=<dir>`: the named context
//! replaces the stage, and the second stage — the image that ships — is built exactly as written.
//! The binary is produced by the same command the first stage runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use demo_apps::projects::PROJECTS;
use serde_json::Value;

use sandbox::support::cargo;

use crate::{rendered_projects, target_dir};

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

/// The Dockerfile's build command (`cargo build --release --locked`, static), run on the
/// rendered project outside the workspace.
fn build_static(project_dir: &Path) {
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
            // Shared by both projects and kept between runs (build cache only).
            .env("CARGO_TARGET_DIR", target_dir().join("demo-projects"))
            .env_remove("CARGO_BUILD_TARGET_DIR")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        &format!("building {} standalone", project_dir.display()),
    );
}

/// Runs the image's binary and waits for `/healthz`.
fn serves_healthz(binary: &Path, env: &[(&str, String)], port: u16) {
    let mut child = Command::new(binary)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the image's binary runs on this host");
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let mut ok = false;
    while Instant::now() < deadline && !ok {
        ok = http_get_ok(&url);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "{} answered /healthz", binary.display());
}

/// A plain HTTP GET over a TCP socket (this test is synchronous: no runtime).
fn http_get_ok(url: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let addr = format!(
        "{}:{}",
        parsed.host_str().unwrap_or_default(),
        parsed.port().unwrap_or(80)
    );
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        parsed.path()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn projects_build_standalone_into_scratch_images_that_pass_hadolint() {
    let rendered = rendered_projects();
    let hadolint = common::config::tools_dir().join("venv/bin/hadolint");
    for project in &PROJECTS {
        let dir = rendered.path().join(project.name);
        let name = project.name;

        // hadolint: no finding at any level.
        run(
            Command::new(&hadolint).arg(dir.join("Dockerfile")),
            &format!("hadolint {name}/Dockerfile"),
        );

        // The first stage's work, done here.
        build_static(&dir);
        let binary = target_dir()
            .join("demo-projects/x86_64-unknown-linux-gnu/release")
            .join(name);
        let ldd = Command::new("ldd").arg(&binary).output().unwrap();
        let ldd_text = String::from_utf8_lossy(&ldd.stdout).to_string()
            + &String::from_utf8_lossy(&ldd.stderr);
        assert!(
            ldd_text.contains("not a dynamic executable") || ldd_text.contains("statically linked"),
            "{name}: static binary expected, ldd says {ldd_text}"
        );
        let stage = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(stage.path().join("out")).unwrap();
        std::fs::copy(&binary, stage.path().join("out").join(name)).unwrap();

        // buildah: the shipped stage exactly as written.
        let tag = format!("localhost/cicd-buildout-test/{name}:{}", std::process::id());
        run(
            Command::new("buildah")
                .args(["bud", "--quiet", "--isolation", "chroot", "--build-context"])
                .arg(format!("build={}", stage.path().display()))
                .args(["-t", &tag, "-f"])
                .arg(dir.join("Dockerfile"))
                .arg(&dir),
            &format!("buildah bud {name}"),
        );
        let inspect: Value = serde_json::from_str(&run(
            Command::new("buildah").args(["inspect", "--type", "image", &tag]),
            "buildah inspect",
        ))
        .unwrap();
        let config = &inspect["OCIv1"]["config"];
        assert_eq!(config["User"], "65532:65532", "{name}: non-root");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!([format!("/{name}")])
        );
        assert_eq!(
            inspect["OCIv1"]["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{name}: one layer on scratch"
        );
        assert!(!tag.ends_with(":latest"));

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
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(unpacked.join("index.json")).unwrap())
                .unwrap();
        let blob = |digest: &str| {
            unpacked
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(blob(index["manifests"][0]["digest"].as_str().unwrap()))
                .unwrap(),
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
        let files: Vec<String> = walk(&rootfs);
        assert_eq!(
            files,
            [name.to_owned()],
            "{name}: the image holds the binary only"
        );
        let port = free_port();
        let env = match name {
            "packet-relay" => vec![
                ("RELAY_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("ROUTER_NAME", "router-east".into()),
            ],
            _ => vec![
                ("DASHBOARD_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("DASHBOARD_ROUTERS", "router-west=http://127.0.0.1:9".into()),
            ],
        };
        serves_healthz(&rootfs.join(name), &env, port);
    }
}

fn walk(root: &Path) -> Vec<String> {
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
