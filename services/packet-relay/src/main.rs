//! `packet-relay [serve]` relays packets; `packet-relay generate` sends them (see the lib).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    packet_relay::main().await
}
