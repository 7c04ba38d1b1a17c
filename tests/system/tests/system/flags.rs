//! Feature flags end to end (issue 20, plan §7 Option A): a flag set in Vault KV reaches the
//! onboarded Go service (built from the project's files as GitLab has them) through the flag
//! sidecar, whose token carries only the policy onboarding wrote; the sidecar's gauges reach the
//! sandbox's real Prometheus; the auditor reports a flag past the age limit with its clock injected.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::world::{GROUP, World};

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub(crate) fn vault(
    world: &World,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    world.rt.block_on(async {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}/v1/{path}", world.get("VAULT_ADDR")));
        if !token.is_empty() {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("OpenBao answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

fn set_flag(world: &World, service: &str, flag: &str, enabled: bool) {
    let (status, answer) = vault(
        world,
        reqwest::Method::POST,
        &format!("kv/data/feature-flags/{service}/{flag}"),
        world.get("VAULT_TOKEN"),
        Some(
            json!({"data": {"enabled": enabled.to_string(), "owner": "team-billing", "description": "system test"}}),
        ),
    );
    assert!(status < 300, "writing the flag: {status} {answer}");
}

fn get_text(world: &World, url: &str) -> Option<String> {
    world.rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    })
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn a_flag_reaches_the_onboarded_service_prometheus_and_the_auditor(world: &World) {
    let service = crate::onboarding::SERVICES[0].0;
    assert_eq!(crate::onboarding::SERVICES[0].1, "go");
    set_flag(world, service, "formal-greeting", true);

    // The sidecar logs in as the service's account in its staging namespace, through the
    // Kubernetes auth role onboarding wrote (a real TokenRequest token, reviewed by kube-apiserver).
    let kube = world.kube();
    let namespace = format!("staging-{service}");
    world
        .rt
        .block_on(kube.apply(
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service, "namespace": namespace}}),
            false,
        ))
        .expect("the service's account (its deploy/base/serviceaccount.yaml)");
    let jwt = world
        .rt
        .block_on(kube.token_request(&namespace, service, &[], 600))
        .expect("a TokenRequest token");
    let jwt = secrecy::ExposeSecret::expose_secret(&jwt).to_owned();
    let token_file = world.dir("flags-sidecar").join("token");
    std::fs::write(&token_file, &jwt).expect("the token file");
    let role = common::contract::feature_flag_role_name(service);
    let (status, answer) = vault(
        world,
        reqwest::Method::POST,
        "auth/kubernetes/login",
        "",
        Some(json!({"role": role, "jwt": jwt})),
    );
    assert_eq!(status, 200, "the sidecar's login: {answer}");
    let token = answer["auth"]["client_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert_eq!(
        answer["auth"]["token_policies"],
        json!([common::contract::feature_flag_policy_name(service)]),
        "the sidecar's token carries its own flags' policy only"
    );
    // It cannot read another service's flags.
    set_flag(world, "web-shop", "new-checkout", true);
    let (denied, _) = vault(
        world,
        reqwest::Method::GET,
        "kv/data/feature-flags/web-shop/new-checkout",
        &token,
        None,
    );
    assert_eq!(
        denied, 403,
        "the sidecar of {service} reads web-shop's flags"
    );
    // Another service's account (same name, another namespace) gets no token from this role.
    world
        .rt
        .block_on(kube.apply(
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service, "namespace": "staging-web-shop"}}),
            false,
        ))
        .expect("a service account elsewhere");
    let other = world
        .rt
        .block_on(kube.token_request("staging-web-shop", service, &[], 600))
        .expect("a TokenRequest token");
    let (refused, _) = vault(
        world,
        reqwest::Method::POST,
        "auth/kubernetes/login",
        "",
        Some(json!({"role": role, "jwt": secrecy::ExposeSecret::expose_secret(&other)})),
    );
    assert!(
        refused == 400 || refused == 403,
        "a login from staging-web-shop as role {role}: {refused}"
    );

    let flags_port = free_port();
    let exe = sandbox::support::workspace_binary("feature-flags", env!("CARGO_TARGET_TMPDIR"));
    let _sidecar = Running(
        Command::new(&exe)
            .args([
                "serve",
                "--service",
                service,
                "--listen",
                &format!("127.0.0.1:{flags_port}"),
                "--refresh",
                "1",
            ])
            .env("VAULT_ADDR", world.get("VAULT_ADDR"))
            .env("VAULT_K8S_ROLE", &role)
            .env("VAULT_K8S_TOKEN_PATH", &token_file)
            .env_remove("VAULT_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("feature-flags serve"),
    );
    let flags_url = format!("http://127.0.0.1:{flags_port}");
    wait_for("the sidecar's first read", Duration::from_secs(20), || {
        get_text(world, &format!("{flags_url}/readyz")).filter(|t| t == "ready")
    });

    // The onboarded Go service, built from its files in GitLab.
    let dir = world.dir(&format!("flags-{service}"));
    world.checkout(&format!("{GROUP}/{service}"), "main", &dir);
    let build = Command::new("go")
        .args(["build", "-o", "bin/service", &format!("./cmd/{service}")])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("go");
    assert!(
        build.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let port = free_port();
    let _app = Running(
        Command::new(dir.join("bin/service"))
            .env("PORT", port.to_string())
            .env("FLAGS_URL", &flags_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the onboarded service"),
    );
    let hello = format!("http://127.0.0.1:{port}/hello?name=ops");
    wait_for(
        "the flag on in the service",
        Duration::from_secs(20),
        || get_text(world, &hello).filter(|t| t.contains("good day, ops")),
    );
    set_flag(world, service, "formal-greeting", false);
    wait_for(
        "the flag off in the service",
        Duration::from_secs(20),
        || get_text(world, &hello).filter(|t| t.contains("hello, ops")),
    );

    // The gauges in real Prometheus.
    world
        .rt
        .block_on(
            world
                .sandbox
                .add_scrape_target("feature-flags", &format!("127.0.0.1:{flags_port}")),
        )
        .expect("a scrape target");
    let query = format!(
        "{}/api/v1/query?query=cicd_feature_flag_enabled%7Bservice%3D%22{service}%22%2Cflag_name%3D%22formal-greeting%22%7D",
        world.get("PROMETHEUS_URL")
    );
    let answer = wait_for(
        "the flag gauge in Prometheus",
        Duration::from_secs(30),
        || get_text(world, &query).filter(|t| t.contains("\"result\":[{")),
    );
    let doc: Value = serde_json::from_str(&answer).expect("Prometheus JSON");
    assert_eq!(doc["data"]["result"][0]["value"][1], json!("0"), "{doc}");

    // The auditor, as the CronJob runs it: logged in through its own Kubernetes role (phase 17),
    // its clock injected: the flags were created today, stale only past 90 days.
    world
        .rt
        .block_on(kube.apply(
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "feature-flag-auditor", "namespace": "monitoring"}}),
            false,
        ))
        .expect("the auditor's account (its deploy/base/serviceaccount.yaml)");
    let auditor_jwt = world
        .rt
        .block_on(kube.token_request("monitoring", "feature-flag-auditor", &[], 600))
        .expect("a TokenRequest token");
    let auditor_token = world.dir("flags-auditor").join("token");
    std::fs::write(
        &auditor_token,
        secrecy::ExposeSecret::expose_secret(&auditor_jwt),
    )
    .expect("the token file");
    let today = common::dates::today();
    let audit = |now: i64| {
        let out = Command::new(&exe)
            .args([
                "audit",
                "--max-age-days",
                "90",
                "--json",
                "--now",
                &common::dates::format(now),
            ])
            .env("VAULT_ADDR", world.get("VAULT_ADDR"))
            .env("VAULT_K8S_ROLE", "feature-flag-auditor")
            .env("VAULT_K8S_TOKEN_PATH", &auditor_token)
            .env_remove("VAULT_TOKEN")
            .env_remove("MATTERMOST_WEBHOOK")
            .env_remove("MATTERMOST_WEBHOOK_VAULT_PATH")
            .output()
            .expect("feature-flags audit");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("the audit as JSON")
    };
    let fresh = audit(today + 90);
    assert_eq!(fresh["stale"], json!([]), "{fresh}");
    assert_eq!(fresh["flags_checked"], json!(2));
    let old = audit(today + 91);
    let stale: Vec<String> = old["stale"]
        .as_array()
        .expect("stale")
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["service"].as_str().unwrap_or_default(),
                s["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        stale,
        [
            format!("{service}/formal-greeting"),
            "web-shop/new-checkout".to_owned()
        ],
        "{old}"
    );
    assert_eq!(old["stale"][0]["age_days"], json!(91));
}
