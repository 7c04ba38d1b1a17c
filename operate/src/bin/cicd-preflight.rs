use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(operate::run_preflight(operate::PreflightCli::parse()).await)
}
