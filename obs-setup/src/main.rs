use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(obs_setup::run(obs_setup::Cli::parse()).await)
}
