//! `packet-relay [serve]` relays packets; `packet-relay generate` sends them (see the lib).

fn main() -> std::process::ExitCode {
    match packet_relay::runtime() {
        Ok(runtime) => runtime.block_on(packet_relay::main()),
        Err(e) => {
            eprintln!("error: starting the tokio runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
