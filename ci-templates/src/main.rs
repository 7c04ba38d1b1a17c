use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(ci_templates::run(ci_templates::Cli::parse()).await)
}
