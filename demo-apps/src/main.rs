use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(demo_apps::run(demo_apps::Cli::parse()).await)
}
