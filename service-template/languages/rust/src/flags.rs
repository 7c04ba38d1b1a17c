//! Feature flags from the platform's flag sidecar (docs/cicd/feature-flag-guide.md):
//! `GET <FLAGS_URL>/v1/flags/<name>` answers `{"name": …, "enabled": true|false}`. A flag that cannot
//! be read is off: a sidecar outage never switches the service to an unreleased path.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Whether the flag is on; `base` is `http://host:port` (the sidecar listens on the pod's loopback).
pub fn enabled(base: &str, name: &str) -> bool {
    let Some(host) = base.strip_prefix("http://") else {
        return false;
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return false;
    }
    let ask = || -> std::io::Result<String> {
        let mut s = TcpStream::connect(host)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET /v1/flags/{name} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.take(8192).read_to_string(&mut out)?;
        Ok(out)
    };
    let Ok(answer) = ask() else { return false };
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        return false;
    };
    head.starts_with("HTTP/1.1 200") && body.replace(' ', "").contains("\"enabled\":true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn sidecar(body: &'static str, status: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn reads_the_flag_and_fails_closed() {
        assert!(enabled(
            &sidecar("{\"name\":\"a\",\"enabled\":true}", "200 OK"),
            "a"
        ));
        assert!(!enabled(&sidecar("{\"enabled\":false}", "200 OK"), "a"));
        assert!(!enabled(&sidecar("", "404 Not Found"), "a"));
        assert!(!enabled(&sidecar("{\"enabled\":true}", "200 OK"), "a/../b"));
        assert!(!enabled("", "a"));
        assert!(!enabled("http://127.0.0.1:1", "a"));
    }
}
