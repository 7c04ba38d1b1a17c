use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(security_setup::run(security_setup::Cli::parse()).await)
}
