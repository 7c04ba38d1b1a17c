use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(gitlab_harden::run(gitlab_harden::Cli::parse()).await)
}
