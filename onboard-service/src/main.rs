use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(onboard_service::run(onboard_service::Cli::parse()).await)
}
