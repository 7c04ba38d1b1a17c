use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(operate::run_readiness(operate::ReadinessCli::parse()).await)
}
