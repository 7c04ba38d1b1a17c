use std::process::Command;

fn run(host: &str, conn: &rusqlite::Connection) {
    // ruleid: platform.rust.shell-command-from-input
    let _ = Command::new("sh").arg("-c").arg(format!("ping -c 1 {host}")).output();
    // ruleid: platform.rust.sql-built-with-format
    conn.execute(&format!("DELETE FROM users WHERE name = '{host}'"), []).unwrap();
    // ok: platform.rust.sql-built-with-format
    conn.execute("DELETE FROM users WHERE name = ?1", [host]).unwrap();
    // ok: platform.rust.shell-command-from-input
    let _ = Command::new("ping").arg("-c").arg("1").arg(host).output();
}
