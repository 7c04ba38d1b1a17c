//! Bad settings stop the dashboard at start: exit 1 and one line naming the variable.

use std::process::Command;

use crate::support::DASHBOARD;

/// Proves that a wrong colour, a malformed router list, a bad poll interval or no source at all
/// are refused before anything starts: exit code 1, exactly one line on stderr that names the
/// variable, nothing on stdout.
#[test]
fn bad_settings_exit_1_with_one_clear_line() {
    let routers = ("DASHBOARD_ROUTERS", "router-west=http://127.0.0.1:9");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[routers, ("APP_COLOR", "purple")],
            "APP_COLOR=\"purple\" is not a release colour: use blue or green",
        ),
        (&[("DASHBOARD_ROUTERS", "router-west")], "DASHBOARD_ROUTERS"),
        (
            &[("DASHBOARD_ROUTERS", "router-west=127.0.0.1:8080")],
            "DASHBOARD_ROUTERS",
        ),
        (
            &[("DASHBOARD_ROUTERS", "a=http://h:1,a=http://h:2")],
            "listed twice",
        ),
        (
            &[routers, ("DASHBOARD_POLL_MS", "fast")],
            "DASHBOARD_POLL_MS",
        ),
        (
            &[routers, ("DASHBOARD_LISTEN_ADDR", "8080")],
            "DASHBOARD_LISTEN_ADDR",
        ),
        (
            &[("DASHBOARD_PROMETHEUS_URL", "prometheus:9090")],
            "DASHBOARD_PROMETHEUS_URL",
        ),
        (&[], "DASHBOARD_PROMETHEUS_URL"),
    ];
    for (env, expected) in cases {
        let out = Command::new(DASHBOARD)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{env:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{env:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("error: "), "{env:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{env:?}: {stderr:?} should say {expected:?}"
        );
        assert!(out.stdout.is_empty(), "{env:?}");
    }
}

/// The dashboard keeps its own env names (it ships without the workspace's `common`); they are
/// exactly the ones `common::env` documents for it, so docs/configuration.md and the local arcade
/// stay right.
#[test]
fn env_names_are_the_documented_ones() {
    for name in netops_dashboard::env::ALL {
        assert!(
            common::env::ALL.contains(name),
            "{name} is not documented in common::env"
        );
    }
    assert_eq!(
        netops_dashboard::env::ALL,
        [
            common::env::DASHBOARD_LISTEN_ADDR,
            common::env::DASHBOARD_ROUTERS,
            common::env::DASHBOARD_PROMETHEUS_URL,
            common::env::DASHBOARD_POLL_MS,
            common::env::APP_VERSION,
            common::env::APP_COLOR,
        ]
    );
}
