//! The service's HTTP API on the standard library: health and readiness for the probes of
//! deploy/base/rollout.yaml, and one greeting endpoint whose wording a feature flag switches.
//! Requests are read with a deadline and a size limit (hostile input).

pub mod flags;
pub mod metrics;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The service's name: its metrics' `service` label (the canary analysis selects by it).
pub const NAME: &str = "example-service";

fn registry() -> &'static metrics::Registry {
    static REGISTRY: OnceLock<metrics::Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| metrics::Registry::new(NAME))
}

/// The greeting text.
pub fn greeting(name: &str, formal: bool) -> String {
    if formal {
        format!("good day, {name}")
    } else {
        format!("hello, {name}")
    }
}

/// Status and body for one request line's target.
pub fn route(target: &str, flags_url: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/healthz" | "/readyz" => (200, "ok".into()),
        "/metrics" => (200, registry().text()),
        "/hello" => {
            let name = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("name="))
                .filter(|n| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                .unwrap_or("world");
            let formal = flags::enabled(flags_url, "formal-greeting");
            (
                200,
                format!(
                    "{{\"greeting\":\"{}\",\"formal-greeting\":{formal}}}",
                    greeting(name, formal)
                ),
            )
        }
        _ => (404, "not found".into()),
    }
}

/// Serves one connection: one request, one answer.
pub fn handle(stream: TcpStream, flags_url: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let start = Instant::now();
    let mut parts = line.split_whitespace();
    let (status, body, path) = match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => {
            let (status, body) = route(target, flags_url);
            (
                status,
                body,
                target.split('?').next().unwrap_or_default().to_owned(),
            )
        }
        _ => (400, "bad request".into(), String::new()),
    };
    if metrics::counted(&path) {
        registry().observe(status, start.elapsed().as_secs_f64());
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    )
}

/// Accepts connections until the listener fails.
pub fn serve(listener: &TcpListener, flags_url: &str) {
    for stream in listener.incoming().flatten() {
        let _ = handle(stream, flags_url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn routes() {
        assert_eq!(route("/healthz", "").0, 200);
        assert_eq!(route("/readyz", "").0, 200);
        assert_eq!(route("/nope", "").0, 404);
        assert!(route("/hello?name=ops", "").1.contains("hello, ops"));
        assert!(route("/hello?name=<script>", "").1.contains("hello, world"));
        assert_eq!(greeting("ops", true), "good day, ops");
    }

    #[test]
    fn serves_over_tcp_and_refuses_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(&listener, ""));
        assert!(ask(addr, "GET /hello HTTP/1.1\r\n\r\n").contains("hello, world"));
        assert!(ask(addr, "POST / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
        let metrics = ask(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(
            metrics.contains("http_requests_total{service=\"example-service\",status=\"200\"}"),
            "{metrics}"
        );
    }
}
