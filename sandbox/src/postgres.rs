//! A private PostgreSQL cluster (Debian's postgresql package) on a loopback port with password
//! authentication, for the DORA collector's shared store in tests and benchmarks. Started from
//! `initdb` into a temporary directory; as root it runs as Debian's `postgres` user, since
//! `initdb` refuses root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The password of the `dora` superuser of every test cluster (tests assert it is never logged).
pub const PASSWORD: &str = "pg-known-S3cret-41";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// A private PostgreSQL cluster (Debian's postgresql-15) on a loopback port, password auth.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `pg_ctl -o` options (port, socket directory): a restart keeps the same address.
    opts: String,
    pub url: String,
}

fn as_postgres_user(bin: &Path, args: &[&str]) -> Command {
    // initdb refuses to run as root: run the server as Debian's `postgres` user then.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

impl Postgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL is installed (scripts/setup-test-env.sh installs Debian's postgresql)",
            )
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        let status = as_postgres_user(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "dora",
                "-A",
                "scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
            ],
        )
        .stdout(Stdio::null())
        .status()
        .unwrap();
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let opts: String = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=on",
            dir.path().display()
        );
        let pg = Self {
            url: format!("postgres://dora:{PASSWORD}@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            opts,
        };
        pg.start_server();
        pg
    }

    fn start_server(&self) {
        let data = self.dir.path().join("data");
        let status = as_postgres_user(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &self.opts,
                "-l",
                self.dir.path().join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
        )
        .stdout(Stdio::null())
        .status()
        .unwrap();
        assert!(status.success(), "pg_ctl start failed");
    }

    /// Stops the server (fast shutdown: clients are disconnected, as in a pod restart).
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        let status = as_postgres_user(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        )
        .stdout(Stdio::null())
        .status()
        .unwrap();
        assert!(status.success(), "pg_ctl stop failed");
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        self.start_server();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres_user(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .stdout(Stdio::null())
        .status();
    }
}
