use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(vault_cicd::run(vault_cicd::Cli::parse()).await)
}
