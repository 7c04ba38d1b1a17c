//! The collector's own `PostgreSQL` (`OBS_DORA_POSTGRES=true`), the way this platform runs every
//! service database: a `CloudNativePG` `Cluster` of 3 instances, as the platform's
//! `services/*/postgres/*-pg-cluster.yaml`, but in the collector's namespace — a pod reads only
//! Secrets of its own namespace, and the collector reads the application secret `CloudNativePG`
//! generates (`<cluster>-app`, key `uri`; `CloudNativePG` docs "Connecting from an application",
//! section "Secrets", vendored in `sandbox/fixtures/cnpg-docs/application-secrets.md`), so no one
//! pastes a connection string into Vault. `OBS_DORA_POSTGRES_EXTERNAL=true` keeps an external
//! database at Vault `database-url` instead.

use serde_json::{Value, json};

use crate::settings::Settings;

/// The `PostgreSQL` image, pinned as the platform pins its clusters' (`CloudNativePG` 1.30's
/// default image).
pub const IMAGE: &str = "ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie";
/// The platform's storage class for databases (Harvester).
pub const STORAGE_CLASS: &str = "harvester";
/// The `Cluster`'s name.
pub const CLUSTER: &str = "dora-collector-pg";
/// Served by the `CloudNativePG` operator (phases 0–11 install it).
pub const CLUSTER_CRD: &str = "clusters.postgresql.cnpg.io";
/// The key of the application secret holding the libpq connection URI.
pub const APP_SECRET_URI_KEY: &str = "uri";

/// The secret `CloudNativePG` generates for the application user (the database's owner).
pub fn app_secret() -> String {
    format!("{CLUSTER}-app")
}

/// The collector's `Cluster`: database `dora` owned by `dora`, 3 instances spread over nodes,
/// bounded resources, and the operator's `PodMonitor` for the platform's Prometheus. Until the
/// operator has created `<cluster>-app`, the collector's pods wait (the secret reference is not
/// optional) and then start on their own. The phase never prunes: switching back to `SQLite`
/// leaves the `Cluster` and its data for the platform team to remove.
pub fn cluster(s: &Settings) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": CLUSTER, "namespace": s.namespace, "labels": crate::desired::labels()},
        "spec": {
            "instances": 3,
            "primaryUpdateStrategy": "unsupervised",
            "bootstrap": {"initdb": {"database": "dora", "owner": "dora"}},
            "imageName": IMAGE,
            "storage": {"size": "5Gi", "storageClass": STORAGE_CLASS},
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "affinity": {"enablePodAntiAffinity": true, "topologyKey": "kubernetes.io/hostname"},
            "monitoring": {"enablePodMonitor": true},
        },
    })
}

/// The collector's `DORA_STORE_URL`, from the application secret.
pub fn store_env() -> Value {
    json!({"name": common::env::DORA_STORE_URL, "valueFrom": {"secretKeyRef": {
        "name": app_secret(), "key": APP_SECRET_URI_KEY, "optional": false}}})
}
