//! The phases' shared API clients (`common::http`) against the GitLab and Harbor stand-ins, when
//! what sits in front of those servers is hostile or misconfigured (issue 18): a next-page `Link`
//! to another origin, a redirect to another port, and Harbor's own relative `Link` headers over
//! several pages. Not a step of the release journey: it needs only the stand-ins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::config::{Environment, PlatformConfig};
use common::gitlab::GitLabClient;
use common::harbor::HarborClient;
use common::http::Retry;
use reqwest::Method;
use sandbox::standins::Fault;
use sandbox::{Options, Sandbox};
use serde_json::json;
use tokio::io::AsyncReadExt as _;

/// What reached the other origin: connections, and requests that carried a credential.
#[derive(Default)]
struct Reached {
    connections: AtomicUsize,
    with_credential: AtomicUsize,
}

/// A port that records every connection and whether its request carries a token, then closes.
async fn other_origin() -> (String, Arc<Reached>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reached = Arc::new(Reached::default());
    let seen = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let mut head = vec![0_u8; 8192];
            let n = socket.read(&mut head).await.unwrap_or(0);
            let text = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
            if text.contains("private-token:") || text.contains("authorization:") {
                seen.with_credential.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (url, reached)
}

/// Proves no token leaves its configured origin and Harbor's relative links page through:
/// - the GitLab stand-in answers the first page of a list with `Link: <other port…>;
///   rel="next"` (what a proxy rewriting links would send): the client refuses it, naming both
///   origins, and sends nothing there;
/// - the GitLab stand-in answers a GET with `302 Location: <other port>`: the client takes the
///   302 as the answer and follows nothing;
/// - the Harbor stand-in, holding 25 projects, sends Harbor's own links
///   (`</api/v2.0/projects?page=2&page_size=10>; rel="next"`, relative to the host, as
///   `BaseAPI.Links` builds them): the client reads all three pages, exactly three GETs.
#[tokio::test]
async fn tokens_stay_on_their_origin_and_harbor_pages_through() {
    common::cli::install_crypto_provider();
    let sandbox = Sandbox::start(Options {
        kube: false,
        vault: false,
        prometheus: false,
        ..Options::default()
    })
    .await
    .expect("the stand-ins start");
    let env = Environment::load_from(Some(&sandbox.env_file()), Vec::new()).unwrap();
    let cfg = PlatformConfig::from_env(&env).unwrap();
    let (elsewhere, reached) = other_origin().await;

    let gitlab = GitLabClient::connect(&cfg).unwrap();
    let gl = sandbox.standin("gitlab");
    gl.control.add_fault(Fault {
        method: Some("GET".into()),
        path_prefix: "/api/v4/users".into(),
        link: Some(format!(
            "<{elsewhere}/api/v4/users?page=2&per_page=1>; rel=\"next\""
        )),
        times: Some(1),
        ..Fault::default()
    });
    let refused = gitlab
        .api()
        .get_all_pages("listing users", "users?per_page=1")
        .await
        .expect_err("a next link to another origin is refused")
        .to_string();
    assert!(
        refused.contains(&elsewhere) && refused.contains(&sandbox.standin("gitlab").url),
        "the error names both origins: {refused}"
    );
    gl.control.add_fault(Fault {
        method: Some("GET".into()),
        path_prefix: "/api/v4/users".into(),
        status: 302,
        location: Some(format!("{elsewhere}/api/v4/users")),
        times: Some(1),
        ..Fault::default()
    });
    let answer = gitlab
        .api()
        .send("listing users", Method::GET, "users", None, Retry::Never)
        .await;
    match answer {
        Ok(a) => assert_eq!(a.status, 302, "a redirect is an answer, not a hop"),
        Err(e) => assert!(e.to_string().contains("302"), "{e}"),
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        reached.connections.load(Ordering::SeqCst),
        0,
        "nothing reached {elsewhere}"
    );
    assert_eq!(reached.with_credential.load(Ordering::SeqCst), 0);

    let harbor = HarborClient::connect(&cfg).unwrap();
    for i in 0..25 {
        harbor
            .create_project(
                &json!({"project_name": format!("paged-{i:02}"), "metadata": {"public": "false"}}),
            )
            .await
            .unwrap();
    }
    let raw = reqwest::Client::new()
        .get(format!(
            "{}/api/v2.0/projects?name=paged-&page=1&page_size=10",
            sandbox.get("HARBOR_URL")
        ))
        .basic_auth("admin", Some(sandbox.get("HARBOR_ADMIN_PASSWORD")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw.headers()["link"],
        "</api/v2.0/projects?name=paged-&page=2&page_size=10>; rel=\"next\"",
        "Harbor's own link: relative to the host, keys sorted"
    );
    assert_eq!(raw.headers()["x-total-count"], "25");
    let before = harbor.api().stats().reads.load(Ordering::SeqCst);
    let projects = harbor
        .api()
        .get_all_pages("listing projects", "projects?name=paged-&page_size=10")
        .await
        .unwrap();
    assert_eq!(projects.len(), 25, "every page read");
    assert_eq!(
        harbor.api().stats().reads.load(Ordering::SeqCst) - before,
        3,
        "three pages, three GETs"
    );
}
