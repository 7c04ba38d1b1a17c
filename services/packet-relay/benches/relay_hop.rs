//! One relay hop against nginx `proxy_pass` and a direct call, side by side in one run
//! (`cargo bench -p packet-relay --bench relay_hop`).
//!
//! The same load generator (wrk, `-s post.lua --latency`, keep-alive connections) POSTs the same
//! packet JSON to `/relay` on loopback, three ways:
//! - direct: wrk → a terminal packet-relay (the sink);
//! - relay:  wrk → packet-relay `router-core` (`NEXT_HOPS` = the sink) → sink;
//! - nginx:  wrk → nginx (`proxy_pass`, upstream keepalive, HTTP/1.1) → sink.
//!
//! CPUs: the two proxies get identical CPU — each pinned to CPU 1 (`taskset -c 1`), the relay
//! with one tokio worker (`TOKIO_WORKER_THREADS=1`), nginx with `worker_processes 1`; wrk and the
//! sink share CPU 0. Each round warms up, then measures; rounds interleave the three paths so
//! that a noisy neighbour hits all of them. The table shows medians over the rounds; added
//! latency is the proxy's percentile minus the direct one of the same round. The CPU time the
//! proxy process spent per request (from /proc) is shown as well: it does not depend on how
//! busy CPU 0 is.
//!
//! Knobs for a quick look: `RELAY_BENCH_SECS` (10), `RELAY_BENCH_WARMUP_SECS` (2),
//! `RELAY_BENCH_ROUNDS` (3), `RELAY_BENCH_CONNECTIONS` (64).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PACKET: &str = r#"{"id":"bench-1","payload":"hello from wrk","hops":[],"ttl":8}"#;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn program(name: &str, candidates: &[&str]) -> PathBuf {
    for c in candidates {
        let p = Path::new(c);
        if p.exists() {
            return p.to_owned();
        }
    }
    panic!(
        "{name} not found (looked at {candidates:?}); on Debian: apt-get install wrk nginx-light util-linux"
    );
}

struct Proc {
    name: &'static str,
    child: Child,
}

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its worker; SIGKILL would orphan it), SIGKILL
    /// after 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program args` pinned to `cpu`.
fn pinned(
    name: &'static str,
    cpu: u32,
    program: &Path,
    args: &[&str],
    env: &[(&str, String)],
    log: &Path,
) -> Proc {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(cpu.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        name,
        child: cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}")),
    }
}

/// POSTs the packet with a raw HTTP/1.1 request; (status, body).
fn post(port: u16) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "POST /relay HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PACKET}",
        PACKET.len()
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn wait_ready(port: u16, p: &mut Proc, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((200, _)) = post(port) {
            return;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!(
                "{} exited ({status}):\n{}",
                p.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} not answering on port {port}:\n{}",
        p.name,
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// utime + stime of a process and of its children that are running (nginx's worker), in ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let own = |pid: u32| -> (u64, u64) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (
            f.get(11).copied().unwrap_or(0),
            f.get(12).copied().unwrap_or(0),
        )
    };
    let (mut user, mut sys) = own(pid);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        let (u, s) = own(child);
        user += u;
        sys += s;
    }
    (user, sys)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One wrk run.
#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    /// Proxy CPU per request, user and system, in microseconds.
    cpu: Option<(f64, f64)>,
}

fn seconds(text: &str) -> f64 {
    let (num, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => f64::NAN,
    }
}

fn wrk(wrk: &Path, script: &Path, port: u16, connections: u64, secs: u64) -> Run {
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(wrk)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "-s",
        ])
        .arg(script)
        .arg("--latency")
        .arg(format!("http://127.0.0.1:{port}/relay"))
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = Run::default();
    let mut in_distribution = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && t.starts_with("50%") {
            run.p50 = seconds(t.split_whitespace().nth(1).unwrap_or_default());
        } else if in_distribution && t.starts_with("99%") {
            run.p99 = seconds(t.split_whitespace().nth(1).unwrap_or_default());
            in_distribution = false;
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            run.errors += v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    assert!(
        run.rps > 0.0 && run.p99 > 0.0,
        "could not read wrk's output:\n{text}"
    );
    run
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn ms(s: f64) -> String {
    format!("{:.3} ms", s * 1e3)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery: nothing to list.
    }
    let relay_bin = PathBuf::from(env!("CARGO_BIN_EXE_packet-relay"));
    let wrk_bin = program("wrk", &["/usr/bin/wrk", "/usr/local/bin/wrk"]);
    let nginx_bin = program(
        "nginx",
        &["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"],
    );
    let _ = program("taskset", &["/usr/bin/taskset", "/bin/taskset"]);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert!(
        cpus >= 2,
        "the benchmark pins the proxies to CPU 1 and wrk to CPU 0: it needs 2 CPUs"
    );
    let secs = env_or("RELAY_BENCH_SECS", 10);
    let warmup = env_or("RELAY_BENCH_WARMUP_SECS", 2);
    let rounds = env_or("RELAY_BENCH_ROUNDS", 3);
    let connections = env_or("RELAY_BENCH_CONNECTIONS", 64);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = d.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{PACKET}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )
    .unwrap();
    let (sink_port, relay_port, nginx_port) = (free_port(), free_port(), free_port());
    std::fs::create_dir_all(d.join("logs")).unwrap();
    std::fs::write(
        d.join("nginx.conf"),
        format!(
            "worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream sink {{ server 127.0.0.1:{sink_port}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{nginx_port};
    location /relay {{
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }}
  }}
}}
",
            d = d.display()
        ),
    )
    .unwrap();

    let relay_env = |name: &str, hops: String, port: u16| {
        vec![
            ("ROUTER_NAME", name.to_owned()),
            ("NEXT_HOPS", hops),
            ("RELAY_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("TOKIO_WORKER_THREADS", "1".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
    };
    let sink_log = d.join("sink.log");
    let mut sink = pinned(
        "sink",
        0,
        &relay_bin,
        &[],
        &relay_env("sink", String::new(), sink_port),
        &sink_log,
    );
    wait_ready(sink_port, &mut sink, &sink_log);
    let relay_log = d.join("relay.log");
    let mut relay = pinned(
        "packet-relay",
        1,
        &relay_bin,
        &[],
        &relay_env(
            "router-core",
            format!("sink=http://127.0.0.1:{sink_port}"),
            relay_port,
        ),
        &relay_log,
    );
    wait_ready(relay_port, &mut relay, &relay_log);
    let nginx_log = d.join("nginx.stderr");
    let conf = d.join("nginx.conf");
    let prefix = d.display().to_string();
    let mut nginx = pinned(
        "nginx",
        1,
        &nginx_bin,
        &[
            "-p",
            &prefix,
            "-c",
            conf.to_str().unwrap(),
            "-g",
            "daemon off;",
        ],
        &[],
        &nginx_log,
    );
    wait_ready(nginx_port, &mut nginx, &nginx_log);

    // Each path answers the packet as expected before it is measured.
    let (_, direct_body) = post(sink_port).unwrap();
    assert!(
        direct_body.contains(r#""hops":["sink"]"#),
        "direct: {direct_body}"
    );
    let (_, relay_body) = post(relay_port).unwrap();
    assert!(
        relay_body.contains(r#""hops":["router-core","sink"]"#),
        "relay: {relay_body}"
    );
    let (_, nginx_body) = post(nginx_port).unwrap();
    assert!(
        nginx_body.contains(r#""hops":["sink"]"#),
        "nginx: {nginx_body}"
    );

    let tck = clock_ticks();
    let paths: [(&str, u16, Option<u32>); 3] = [
        ("direct", sink_port, None),
        ("relay", relay_port, Some(relay.child.id())),
        ("nginx", nginx_port, Some(nginx.child.id())),
    ];
    eprintln!(
        "relay_hop: {rounds} rounds × (direct, relay, nginx), {warmup} s warm-up + {secs} s each, wrk -t1 -c{connections}"
    );
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); 3];
    for round in 1..=rounds {
        for (i, (name, port, pid)) in paths.iter().enumerate() {
            if warmup > 0 {
                wrk(&wrk_bin, &script, *port, connections, warmup);
            }
            let before = pid.map(cpu_ticks);
            let mut run = wrk(&wrk_bin, &script, *port, connections, secs);
            if let (Some(pid), Some((u0, s0))) = (pid, before) {
                let (u1, s1) = cpu_ticks(*pid);
                #[allow(clippy::cast_precision_loss)]
                let per = |t: u64| t as f64 / tck * 1e6 / (run.rps * secs as f64);
                run.cpu = Some((per(u1 - u0), per(s1 - s0)));
            }
            eprintln!(
                "  round {round} {name:6}: {:>9.0} req/s  p50 {}  p99 {}  errors {}{}",
                run.rps,
                ms(run.p50),
                ms(run.p99),
                run.errors,
                run.cpu
                    .map(|(u, s)| format!("  proxy CPU {u:.1}+{s:.1} µs/req (user+sys)"))
                    .unwrap_or_default()
            );
            results[i].push(run);
        }
    }

    let direct = &results[0];
    let row = |i: usize| {
        let runs = &results[i];
        let rps = median(runs.iter().map(|r| r.rps).collect());
        let p50 = median(runs.iter().map(|r| r.p50).collect());
        let p99 = median(runs.iter().map(|r| r.p99).collect());
        let add50 = median(
            runs.iter()
                .zip(direct)
                .map(|(r, d)| r.p50 - d.p50)
                .collect(),
        );
        let add99 = median(
            runs.iter()
                .zip(direct)
                .map(|(r, d)| r.p99 - d.p99)
                .collect(),
        );
        let cpu = runs.iter().filter_map(|r| r.cpu).collect::<Vec<_>>();
        let cpu = (!cpu.is_empty()).then(|| {
            (
                median(cpu.iter().map(|c| c.0).collect()),
                median(cpu.iter().map(|c| c.1).collect()),
            )
        });
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        (rps, p50, p99, add50, add99, cpu, errors)
    };
    let rows = [row(0), row(1), row(2)];
    let mut table = String::from(
        "| path | req/s | p50 | p99 | added p50 | added p99 | proxy CPU per request (user + sys) | non-2xx / socket errors |\n|---|---|---|---|---|---|---|---|\n",
    );
    let labels = [
        "direct: wrk → sink",
        "relay: wrk → packet-relay → sink",
        "nginx: wrk → nginx proxy_pass → sink",
    ];
    for (i, (rps, p50, p99, add50, add99, cpu, errors)) in rows.iter().enumerate() {
        let (a50, a99, c) = if i == 0 {
            ("—".to_owned(), "—".to_owned(), "—".to_owned())
        } else {
            (
                ms(*add50),
                ms(*add99),
                cpu.map(|(u, s)| format!("{:.1} µs ({u:.1} + {s:.1})", u + s))
                    .unwrap_or_default(),
            )
        };
        let _ = writeln!(
            table,
            "| {} | {:.0} | {} | {} | {a50} | {a99} | {c} | {errors} |",
            labels[i],
            rps,
            ms(*p50),
            ms(*p99)
        );
    }
    let (relay_row, nginx_row) = (&rows[1], &rows[2]);
    let cpu_ratio = match (relay_row.5, nginx_row.5) {
        (Some((ru, rs)), Some((nu, ns))) => format!("{:.2}", (ru + rs) / (nu + ns)),
        _ => "n/a".into(),
    };
    let _ = writeln!(
        table,
        "\nrelay / nginx: throughput {:.2}×, added p50 {:.2}×, added p99 {:.2}×, CPU per request {cpu_ratio}×",
        relay_row.0 / nginx_row.0,
        relay_row.3 / nginx_row.3,
        relay_row.4 / nginx_row.4,
    );
    println!(
        "\n## relay_hop: {rounds} rounds, {secs} s each after {warmup} s warm-up, wrk -t1 -c{connections}, medians\n"
    );
    println!("{table}");
    let total_errors: u64 = rows.iter().map(|r| r.6).sum();
    if total_errors > 0 {
        eprintln!(
            "WARNING: {total_errors} non-2xx answers or socket errors: the numbers above are not clean"
        );
    }
    drop(nginx);
    drop(relay);
    drop(sink);
}
