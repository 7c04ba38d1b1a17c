//! Workload namespaces can pull from Harbor's private projects: every pod template the platform
//! runs there references `harbor-pull`; every such namespace carries the label phase 15's
//! `ClusterExternalSecret` selects; and that `ExternalSecret`'s store logs in to a Vault role that
//! reads the pull robot and nothing else (ephemeral namespaces use it too) — shown by logging in to
//! `OpenBao` as the store's service account with a real `TokenRequest` token, and rendering the
//! Secret's template with what it reads.

use std::collections::BTreeSet;

use base64::Engine as _;
use common::contract;
use serde_json::{Value, json};

use crate::world::{GROUP, World, documents, kustomize};

/// Every pod spec in an object (Deployments, Rollouts, Jobs, analysis Job providers).
fn pod_specs(object: &Value, out: &mut Vec<Value>) {
    match object {
        Value::Object(map) => {
            if let Some(template) = map
                .get("template")
                .filter(|t| t["spec"]["containers"].is_array())
            {
                out.push(template["spec"].clone());
            }
            for value in map.values() {
                pod_specs(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| pod_specs(v, out)),
        _ => {}
    }
}

pub fn workload_namespaces_pull_with_the_robot_eso_reads(world: &World) {
    let mut checked = 0;
    let mut namespaces = BTreeSet::new();
    for service in seeded_projects::ALL {
        let path = format!("{GROUP}/{}", service.name);
        let dir = world.dir(&format!("pull-{}", service.name));
        world.checkout(&path, "main", &dir);
        let overlays = std::fs::read_dir(dir.join("deploy/overlays")).expect("overlays");
        for overlay in overlays {
            let overlay = overlay.expect("entry").path();
            for doc in documents(&kustomize(&overlay)) {
                if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                    namespaces.insert(ns.to_owned());
                }
                let mut specs = Vec::new();
                pod_specs(&doc, &mut specs);
                for spec in specs {
                    assert!(
                        spec["imagePullSecrets"]
                            .as_array()
                            .is_some_and(|s| s.contains(&json!({"name": contract::PULL_SECRET}))),
                        "{} {} in {}: no imagePullSecrets {}",
                        doc["kind"],
                        doc["metadata"]["name"],
                        overlay.display(),
                        contract::PULL_SECRET
                    );
                    checked += 1;
                }
            }
        }
    }
    for object in [
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "traffic-generator", "namespace": "demo-apps"}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate", "metadata": {"name": "smoke-test"}}),
    ] {
        let live = world.live(&object).expect("applied by its phase");
        let mut specs = Vec::new();
        pod_specs(&live, &mut specs);
        assert!(!specs.is_empty());
        for spec in specs {
            assert_eq!(
                spec["imagePullSecrets"],
                json!([{"name": contract::PULL_SECRET}]),
                "{}",
                object["metadata"]["name"]
            );
            checked += 1;
        }
    }
    // The namespaces those workloads land in are labelled (phase 15, or phase 18 for its own).
    namespaces.insert("demo-apps".into());
    for ns in &namespaces {
        let live = world
            .live(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .unwrap_or_else(|| panic!("namespace {ns} does not exist"));
        assert_eq!(
            live["metadata"]["labels"][contract::HARBOR_PULL_LABEL],
            "true",
            "namespace {ns} gets no pull Secret"
        );
    }
    eprintln!(
        "    {checked} pod templates reference {}; namespaces {namespaces:?} are labelled",
        contract::PULL_SECRET
    );

    // The Secret's source: what ESO reads, as ESO.
    let ces = world
        .live(&json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret", "metadata": {"name": contract::PULL_SECRET}}))
        .expect("phase 15's ClusterExternalSecret");
    let spec = &ces["spec"]["externalSecretSpec"];
    let keys: BTreeSet<&str> = spec["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|d| d["remoteRef"]["key"].as_str())
        .collect();
    assert_eq!(keys, BTreeSet::from([contract::KV_HARBOR_PULL]));
    // The store it names (phase 13), and the Vault role and service account that store logs in with.
    assert_eq!(spec["secretStoreRef"]["kind"], "ClusterSecretStore");
    let store_name = spec["secretStoreRef"]["name"]
        .as_str()
        .expect("a store name");
    let store = world
        .live(&json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": store_name}}))
        .unwrap_or_else(|| panic!("phase 13's ClusterSecretStore {store_name}"));
    // Ephemeral namespaces are labelled harbor-pull too: the store must not exclude them.
    assert!(
        store["spec"]["conditions"].is_null(),
        "{store_name} must serve every namespace: {}",
        store["spec"]["conditions"]
    );
    let auth = &store["spec"]["provider"]["vault"]["auth"]["kubernetes"];
    let role = auth["role"].as_str().expect("a Vault role");
    let (sa_name, sa_namespace) = (
        auth["serviceAccountRef"]["name"]
            .as_str()
            .expect("a service account"),
        auth["serviceAccountRef"]["namespace"]
            .as_str()
            .expect("its namespace"),
    );
    // The platform's own store is closed to ephemeral namespaces (defence in depth, ADR 0008).
    let platform_store = world
        .live(&json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": contract::SECRET_STORE}}))
        .expect("phase 13's platform store");
    assert_eq!(
        platform_store["spec"]["conditions"][0]["namespaceSelector"]["matchExpressions"][0],
        json!({"key": contract::EPHEMERAL_LABEL, "operator": "DoesNotExist"})
    );
    let kube = world.kube();
    let sa_token = world
        .rt
        .block_on(kube.token_request(sa_namespace, sa_name, &[], 600))
        .expect("a TokenRequest for ESO's service account");
    let (username, password) = world.rt.block_on(async {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!(
                "{}/v1/auth/kubernetes/login",
                world.get("VAULT_ADDR")
            ))
            .json(&json!({"role": role, "jwt": secrecy::ExposeSecret::expose_secret(&sa_token)}))
            .send()
            .await
            .expect("OpenBao")
            .json()
            .await
            .expect("JSON");
        let eso = login["auth"]["client_token"]
            .as_str()
            .unwrap_or_else(|| panic!("ESO's login as {role} was refused: {login}"))
            .to_owned();
        let read = |path: String| {
            http.get(format!("{}/v1/kv/data/{path}", world.get("VAULT_ADDR")))
                .header("X-Vault-Token", &eso)
                .send()
        };
        // What merge request content could reach through this store: the pull robot, nothing else.
        for other in [
            "monitoring/dora-collector",
            "services/netops-dashboard",
            contract::KV_ARGOCD_TOKEN,
            contract::KV_HARBOR_PUSH,
        ] {
            let status = read(other.to_owned()).await.expect("OpenBao").status();
            assert_eq!(status, 403, "role {role} must not read kv/{other}");
        }
        let read = read(contract::KV_HARBOR_PULL.to_owned())
            .await
            .expect("OpenBao");
        assert_eq!(
            read.status(),
            200,
            "role {role} must read {}",
            contract::KV_HARBOR_PULL
        );
        let data: Value = read.json().await.expect("JSON");
        (
            data["data"]["data"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            data["data"]["data"]["password"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    });
    let (robot, secret) = world.robot("argocd-pull");
    assert_eq!(
        (&username, &password),
        (&robot, &secret),
        "the pull robot phase 14 created"
    );
    // The template as ESO renders it (Go template, sprig's b64enc).
    let template = spec["target"]["template"]["data"][".dockerconfigjson"]
        .as_str()
        .expect("a dockerconfigjson template");
    assert_eq!(
        spec["target"]["template"]["type"],
        "kubernetes.io/dockerconfigjson"
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let rendered = template
        .replace("{{ .username }}", &username)
        .replace("{{ .password }}", &password)
        .replace("{{ printf \"%s:%s\" .username .password | b64enc }}", &auth);
    let config: Value = serde_json::from_str(&rendered).expect("the rendered Secret is JSON");
    let entry = &config["auths"][world.harbor_registry()];
    assert_eq!(entry["auth"], auth);
    assert_eq!(entry["username"], robot);
}
