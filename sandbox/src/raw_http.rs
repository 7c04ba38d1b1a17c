//! Raw-socket HTTP/1.1 clients for the hostile-input suites of the services (issue 18): a client
//! that writes exactly the bytes given, as slowly as asked, and reports each answer's status and
//! whether the server closed the connection; the resident memory of a server process; and the
//! open-file limit for flood tests.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A field of /proc/<pid>/status in KiB (`VmRSS` now, `VmHWM` the peak so far).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Asserts that the peak resident memory (`VmHWM`) of `pid` stayed under `limit_kib`; the peak.
#[track_caller]
pub fn assert_peak_memory_under(pid: u32, limit_kib: u64, after: &str) -> u64 {
    let peak = memory_kib(pid, "VmHWM");
    assert!(
        peak < limit_kib,
        "after {after}: peak resident memory {peak} KiB, over the limit of {limit_kib} KiB"
    );
    peak
}

/// What a connection got: the status of each answer in order, whether the router closed it,
/// and when (from the first byte written).
#[derive(Debug)]
pub struct Outcome {
    pub statuses: Vec<u16>,
    pub closed: bool,
    pub took: Duration,
}

/// The statuses of the answers in `bytes` (each framed by Content-Length, interim 1xx without a
/// body); stops at an incomplete one.
pub fn statuses(mut bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let Some(status) = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        out.push(status);
        if bytes.len() < end + 4 + len {
            break;
        }
        bytes = &bytes[end + 4 + len..];
    }
    out
}

/// Writes `parts` (pausing `gap` between them), then reads until the router closes the
/// connection or `wait` passes.
pub async fn converse(addr: &str, parts: &[&[u8]], gap: Duration, wait: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let begun = Instant::now();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        // The router may close as soon as it has seen enough: later writes may fail.
        if s.write_all(part).await.is_err() {
            break;
        }
    }
    let mut got = Vec::new();
    let mut chunk = vec![0_u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(wait.saturating_sub(begun.elapsed()), s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    Outcome {
        statuses: statuses(&got),
        closed,
        took: begun.elapsed(),
    }
}

/// Opens `count` connections to `addr` at once (each given 3 s to connect) and keeps them open:
/// the established ones, and how many never got through (left in SYN retry by a full backlog).
pub async fn open_idle(addr: &str, count: usize) -> (Vec<TcpStream>, usize) {
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..count {
        let addr = addr.to_owned();
        connects.spawn(async move {
            tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut held = Vec::with_capacity(count);
    let mut missed = 0;
    while let Some(c) = connects.join_next().await {
        match c.expect("connect task") {
            Some(s) => held.push(s),
            None => missed += 1,
        }
    }
    (held, missed)
}

/// Opens `count` connections at once and writes `request` on each (a partial request: the
/// server is left waiting for the rest); the connections, kept open.
pub async fn open_stalled(addr: &str, count: usize, request: &[u8]) -> Vec<TcpStream> {
    let mut writes = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (addr, request) = (addr.to_owned(), request.to_vec());
        writes.spawn(async move {
            let mut s = TcpStream::connect(&addr).await.expect("connect");
            let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&request)).await;
            s
        });
    }
    let mut held = Vec::with_capacity(count);
    while let Some(s) = writes.join_next().await {
        held.push(s.expect("write task"));
    }
    held
}

/// What a client that never reads got: how many whole requests it wrote, how many answers
/// arrived once it finally read, and whether the stream had ended by then (the server gave up).
#[derive(Debug)]
pub struct DeafClient {
    pub requests_written: usize,
    pub answers: usize,
    pub ended: bool,
}

/// Pipelines `count` copies of `request` (a keep-alive request) without reading, for as long as
/// the server takes them (each write given 2 s), stays deaf for `deaf_for`, then reads what is
/// there for at most 3 s. A server with a write deadline has closed the connection by then with
/// requests unanswered; one without it answers every request written (and then waits for more).
pub async fn never_reads(
    addr: &str,
    request: &[u8],
    count: usize,
    deaf_for: Duration,
) -> DeafClient {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let pipeline = request.repeat(count);
    let mut written = 0;
    while written < pipeline.len() {
        let end = (written + 64 * 1024).min(pipeline.len());
        match tokio::time::timeout(Duration::from_secs(2), s.write(&pipeline[written..end])).await {
            Ok(Ok(n)) if n > 0 => written += n,
            _ => break,
        }
    }
    tokio::time::sleep(deaf_for).await;
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        let mut chunk = vec![0_u8; 64 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    DeafClient {
        requests_written: written / request.len(),
        answers: statuses(&got).len(),
        ended,
    }
}

/// Asserts the server gave up on a client that never reads: the stream had ended when the client
/// read, with fewer answers than whole requests written.
#[track_caller]
pub fn assert_gave_up_on(deaf: &DeafClient) {
    assert!(
        deaf.ended && deaf.answers < deaf.requests_written,
        "a client that never reads is still served (no write deadline): {deaf:?}"
    );
}

/// Repeats `request` (one whole request that closes) until its first answer is `status`, at
/// most `bound`; the time it took, or `None`.
pub async fn served_within(
    addr: &str,
    request: &[u8],
    status: u16,
    bound: Duration,
) -> Option<Duration> {
    let begun = Instant::now();
    while begun.elapsed() < bound {
        let got = converse(addr, &[request], Duration::ZERO, Duration::from_secs(5)).await;
        if got.statuses.first() == Some(&status) {
            return Some(begun.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Raises the soft open-file limit of `pid` to at least `want` (only root may raise the hard
/// limit: a machine whose hard limit is too low is named with the fix).
pub fn raise_fd_limit(pid: u32, want: u64) {
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--raw",
            "--noheadings",
            "--output",
            "SOFT,HARD",
        ])
        .output()
        .expect("prlimit (util-linux) on PATH");
    let text = String::from_utf8_lossy(&out.stdout);
    let limit = |i: usize| -> u64 {
        text.split_whitespace()
            .nth(i)
            .and_then(|v| {
                if v == "unlimited" {
                    Some(u64::MAX)
                } else {
                    v.parse().ok()
                }
            })
            .unwrap_or(0)
    };
    let (soft, hard) = (limit(0), limit(1));
    assert!(
        hard >= want,
        "the open-file hard limit is {hard}; this test needs {want} (as root: ulimit -Hn {want})"
    );
    if soft >= want {
        return;
    }
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={want}:{hard}"),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit --pid {pid} --nofile={want}:{hard}");
}

/// A server process put through [`slowloris_and_floods`].
pub struct HostileTarget<'a> {
    /// `host:port`.
    pub addr: &'a str,
    /// The server's process (for its memory and descriptors).
    pub pid: u32,
    /// Its memory limit in the cluster, in KiB.
    pub memory_limit_kib: u64,
    /// Its connection cap.
    pub max_connections: usize,
    /// Its head and body deadline.
    pub deadline: Duration,
    /// A path that takes a POST body, and the headers (each ending in CRLF) that make the server
    /// read it (an accepted token, an event name).
    pub post_path: &'a str,
    pub post_headers: &'a str,
    /// One whole request (with `Connection: close`) and the status it must get.
    pub well_formed: (&'a [u8], u16),
}

/// The slowloris and flood cases of the packet-relay abuse suite, against another server: a
/// head trickled a byte at a time, a silent connection, a Content-Length and a chunked body that
/// stop, trailer and extension floods, a client that never reads its answers, 1,000 connections
/// stalled inside a 40 KiB head, and 10,000 idle connections. Each slow or broken connection must be closed within twice the
/// deadline (plus a second), the peak memory must stay under the limit, the server must hold no
/// more descriptors than its cap allows, and it must serve the well-formed request again once
/// the floods are closed. Returns one line per case, for the test's output.
pub async fn slowloris_and_floods(t: &HostileTarget<'_>) -> Vec<String> {
    let bound = t.deadline * 2 + Duration::from_secs(1);
    let wait = bound + Duration::from_secs(5);
    let post = |extra: &str| {
        format!(
            "POST {} HTTP/1.1\r\nHost: t\r\n{}{extra}\r\n",
            t.post_path, t.post_headers
        )
    };
    let head = post("Content-Type: application/json\r\nContent-Length: 1000\r\n");
    let trickle: Vec<&[u8]> = head.as_bytes().chunks(1).collect();
    let half_body = format!("{head}{{\"object_kind\":");
    let half_chunked = format!(
        "{}5\r\n{{\"obj",
        post("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    );
    let mut trailer_flood = post("Transfer-Encoding: chunked\r\n") + "0\r\n";
    for _ in 0..200 {
        trailer_flood.push_str(&format!("X-Flood: {}\r\n", "t".repeat(1024)));
    }
    trailer_flood.push_str("\r\n");
    let mut extension_flood = post("Transfer-Encoding: chunked\r\n");
    for _ in 0..100 {
        extension_flood.push_str(&format!("1;{}\r\n{{\r\n", "e".repeat(1024)));
    }
    extension_flood.push_str("0\r\n\r\n");
    let gap = t.deadline / 10;
    let (half_body, half_chunked, trailer_flood, extension_flood) = (
        [half_body.as_bytes()],
        [half_chunked.as_bytes()],
        [trailer_flood.as_bytes()],
        [extension_flood.as_bytes()],
    );
    let (slow_head, silent, slow_body, slow_chunks, trailers, extensions) = tokio::join!(
        converse(t.addr, &trickle, gap, wait),
        converse(t.addr, &[], gap, wait),
        converse(t.addr, &half_body, gap, wait),
        converse(t.addr, &half_chunked, gap, wait),
        converse(t.addr, &trailer_flood, gap, wait),
        converse(t.addr, &extension_flood, gap, wait),
    );
    let mut report = Vec::new();
    for (case, got) in [
        ("head trickled a byte at a time", &slow_head),
        ("silent connection", &silent),
        ("Content-Length body that stops", &slow_body),
        ("chunked body that stops", &slow_chunks),
        ("200 KiB of trailers", &trailers),
        ("100 KiB of chunk extensions", &extensions),
    ] {
        assert!(
            got.closed && got.took <= bound,
            "{case}: not closed within {bound:?}: {got:?}"
        );
        assert!(
            got.statuses
                .iter()
                .all(|s| (400..500).contains(s) || *s == 503),
            "{case}: answered {:?}",
            got.statuses
        );
        report.push(format!(
            "{case}: closed after {:?}, answers {:?}",
            got.took, got.statuses
        ));
    }
    // The well-formed request kept alive, pipelined until the server's writes stall.
    let keep_alive = String::from_utf8_lossy(t.well_formed.0).replace("Connection: close\r\n", "");
    let deaf = never_reads(t.addr, keep_alive.as_bytes(), 200_000, bound).await;
    assert_gave_up_on(&deaf);
    report.push(format!(
        "a client that never reads: {} requests pipelined, the server gave up after {} answers",
        deaf.requests_written, deaf.answers
    ));
    assert_peak_memory_under(t.pid, t.memory_limit_kib, "the slow clients");

    let stalled = open_stalled(
        t.addr,
        1000,
        format!(
            "POST {} HTTP/1.1\r\nX-Pad: {}",
            t.post_path,
            "h".repeat(40 * 1024)
        )
        .as_bytes(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = memory_kib(t.pid, "VmRSS");
    let served = served_within(t.addr, t.well_formed.0, t.well_formed.1, bound * 3).await;
    let peak = assert_peak_memory_under(t.pid, t.memory_limit_kib, "1,000 stalled heads");
    let served = served.unwrap_or_else(|| {
        panic!(
            "1,000 stalled heads: the well-formed request was not served within {:?}",
            bound * 3
        )
    });
    report.push(format!(
        "1,000 stalled 40 KiB heads: RSS {during} KiB while they stood, peak {peak} KiB; served again after {served:?}"
    ));
    drop(stalled);

    raise_fd_limit(std::process::id(), 11_000);
    raise_fd_limit(t.pid, 11_000);
    let begun = Instant::now();
    let (idle, missed) = open_idle(t.addr, 10_000).await;
    let fds = std::fs::read_dir(format!("/proc/{}/fd", t.pid)).map_or(0, Iterator::count);
    assert!(
        fds < t.max_connections + 64,
        "10,000 idle connections: the server holds {fds} descriptors, over its cap of {}",
        t.max_connections
    );
    let served = served_within(t.addr, t.well_formed.0, t.well_formed.1, bound * 3).await;
    let peak = assert_peak_memory_under(t.pid, t.memory_limit_kib, "10,000 idle connections");
    let served = served.unwrap_or_else(|| {
        panic!(
            "10,000 idle connections: the well-formed request was not served within {:?}",
            bound * 3
        )
    });
    report.push(format!(
        "10,000 idle connections: {} established in {:?} ({missed} not), server descriptors {fds}, peak {peak} KiB; served after {served:?}",
        idle.len(),
        begun.elapsed()
    ));
    drop(idle);
    report
}
