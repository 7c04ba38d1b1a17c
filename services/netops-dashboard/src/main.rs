fn main() -> std::process::ExitCode {
    // One TLS provider (ring) for reqwest, which is built without one (as in the workspace).
    let _ = rustls::crypto::ring::default_provider().install_default();
    netops_dashboard::cli_main()
}
