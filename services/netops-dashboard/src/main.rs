fn main() -> std::process::ExitCode {
    common::cli::install_crypto_provider();
    netops_dashboard::cli_main()
}
