//! `sandbox up` interrupted (issue 18): Ctrl-C (SIGINT), SIGTERM and SIGKILL, each at three
//! moments of the start — as soon as it has made its directory, once the stand-ins run, and once
//! kube-apiserver or OpenBao is starting. After each, `sandbox down` must leave no process of that sandbox running (none
//! with the sandbox's directory as working directory or in its command line), and the next
//! `sandbox up` in the same directory must succeed. Before the fix, an interrupted `up` left
//! etcd, kube-apiserver and the stand-ins running, `down` said "0 process(es) stopped", and the
//! next `up` waited on etcd's lock.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sandbox");

/// Processes of the sandbox in `dir` (which may already be removed: `/proc/<pid>/cwd` then
/// reads `<dir> (deleted)`).
fn processes_of(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if cwd.starts_with(&dir) || cmdline.contains(&dir) {
            found.push(format!("{pid}: {}", cmdline.trim()));
        }
    }
    found
}

fn sandbox(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--dir").arg(dir).args(args).stdin(Stdio::null());
    cmd
}

/// Runs `sandbox ARGS` to completion within `limit`: (exit code, stderr).
fn run(dir: &Path, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let log = dir.with_extension(format!("{}.log", args[0]));
    let mut child = sandbox(dir, args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let code = wait(&mut child, limit);
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The names `up` has recorded in `state.json` so far.
fn recorded(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["processes"].as_array().map(|p| {
                p.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum Moment {
    AtOnce,
    StandinsRunning,
    ServersStarting,
}

impl Moment {
    /// Waits for this moment of `up`; false if `up` ended first.
    fn reached(self, dir: &Path, up: &mut Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            if up.try_wait().unwrap().is_some() {
                return false;
            }
            let names = recorded(dir);
            let here = match self {
                // `up` has made its directory: nothing is started yet.
                Moment::AtOnce => dir.exists(),
                Moment::StandinsRunning => names.iter().any(|n| n == "standins"),
                Moment::ServersStarting => names
                    .iter()
                    .any(|n| n == "kube-apiserver" || n == "openbao"),
            };
            if here {
                return true;
            }
            assert!(Instant::now() < deadline, "{self:?} never reached");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn an_interrupted_up_is_cleaned_and_the_next_up_works() {
    let root = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for signal in ["INT", "TERM", "KILL"] {
        for moment in [
            Moment::AtOnce,
            Moment::StandinsRunning,
            Moment::ServersStarting,
        ] {
            let dir = root.path().join(format!("{signal}-{moment:?}"));
            let mut up = sandbox(&dir, &["up", "--no-prometheus"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.with_extension("interrupted.log")).unwrap())
                .spawn()
                .unwrap();
            assert!(
                moment.reached(&dir, &mut up),
                "{signal} {moment:?}: `sandbox up` ended before the moment"
            );
            let killed = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(up.id().to_string())
                .status()
                .unwrap()
                .success();
            assert!(killed);
            let code = wait(&mut up, Duration::from_secs(60));
            let interrupted_log =
                std::fs::read_to_string(dir.with_extension("interrupted.log")).unwrap_or_default();
            if signal != "KILL" {
                // SIGINT and SIGTERM: `up` stops what it started itself, and says so.
                assert_eq!(code, Some(1), "{signal} {moment:?}: {interrupted_log}");
                assert!(
                    interrupted_log.contains(&format!("interrupted by SIG{signal}")),
                    "{signal} {moment:?}: {interrupted_log}"
                );
                let left = processes_of(&dir);
                assert!(left.is_empty(), "{signal} {moment:?}: `up` left {left:?}");
            }
            // After SIGKILL with the servers starting, the next `up` itself must clean what
            // was left (its own path, no `down` first); otherwise `down` runs first.
            let up_cleans = signal == "KILL" && matches!(moment, Moment::ServersStarting);
            let down_log = if up_cleans {
                assert!(
                    !processes_of(&dir).is_empty(),
                    "SIGKILL left nothing to clean"
                );
                "no down: the next up cleans".to_owned()
            } else {
                let (down, down_log) = run(&dir, &["down"], Duration::from_secs(60));
                assert_eq!(down, Some(0), "{signal} {moment:?}: down: {down_log}");
                let left = processes_of(&dir);
                assert!(left.is_empty(), "{signal} {moment:?}: after down: {left:?}");
                down_log
            };
            let begun = Instant::now();
            let (again, again_log) =
                run(&dir, &["up", "--no-prometheus"], Duration::from_secs(240));
            assert_eq!(
                again,
                Some(0),
                "{signal} {moment:?}: the next up: {again_log}"
            );
            if up_cleans {
                assert!(
                    again_log.contains("cleaned up what an interrupted `sandbox up` left"),
                    "{again_log}"
                );
            }
            let by_up = interrupted_log
                .lines()
                .find(|l| l.contains("interrupted by"))
                .unwrap_or("(killed: nothing of its own)");
            report.push(format!(
                "{signal} {moment:?}: up said {by_up:?}; {}; next up {:.1} s",
                down_log.trim(),
                begun.elapsed().as_secs_f64()
            ));
            // Someone's shell (here a `sleep`) left in the directory is not the sandbox's:
            // `down` stops only the programs a sandbox starts.
            let mut bystander = Command::new("sleep")
                .arg("300")
                .current_dir(&dir)
                .spawn()
                .unwrap();
            let (down, down_log) = run(&dir, &["down"], Duration::from_secs(60));
            assert_eq!(down, Some(0), "{down_log}");
            assert!(
                bystander.try_wait().unwrap().is_none(),
                "down killed a process that is not the sandbox's"
            );
            let _ = bystander.kill();
            let _ = bystander.wait();
            let left = processes_of(&dir);
            assert!(
                left.is_empty(),
                "{signal} {moment:?}: after the second down: {left:?}"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// Proves `up` and `down` never take what is not the sandbox's: `up` refuses a directory that
/// holds other files (before the marker, `sandbox --dir . up` and Ctrl-C removed the working
/// directory), `down` leaves such a directory in place, and a PID in `state.json` that now
/// belongs to another process (PIDs are reused) is not stopped.
#[test]
fn up_and_down_leave_what_is_not_the_sandboxs() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("someones-project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("main.go"), "package main\n").unwrap();
    let (up, up_log) = run(
        &project,
        &["up", "--no-prometheus"],
        Duration::from_secs(60),
    );
    assert_eq!(up, Some(1), "{up_log}");
    assert!(
        up_log.contains("refusing to start a sandbox in")
            && up_log.contains("choose a new or empty directory"),
        "{up_log}"
    );
    assert!(processes_of(&project).is_empty());
    let (down, down_log) = run(&project, &["down"], Duration::from_secs(60));
    assert_eq!(down, Some(0), "{down_log}");
    assert!(
        down_log.contains("left") && down_log.contains("in place"),
        "{down_log}"
    );
    assert!(
        project.join("main.go").is_file(),
        "down removed a directory that is not a sandbox's"
    );

    // A sandbox directory whose state.json names a PID now used by someone else's program.
    let stale = root.path().join("stale-sandbox");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join(sandbox::DIR_MARKER), "").unwrap();
    let mut other = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(
        stale.join("state.json"),
        serde_json::json!({"processes": [{"name": "etcd", "pid": other.id()}], "complete": true})
            .to_string(),
    )
    .unwrap();
    let (down, down_log) = run(&stale, &["down"], Duration::from_secs(60));
    assert_eq!(down, Some(0), "{down_log}");
    assert!(
        other.try_wait().unwrap().is_none(),
        "down stopped a reused PID that is not the sandbox's: {down_log}"
    );
    assert!(down_log.contains("0 process(es) stopped"), "{down_log}");
    assert!(
        !stale.exists(),
        "the sandbox's own directory was not removed"
    );
    let _ = other.kill();
    let _ = other.wait();
}
