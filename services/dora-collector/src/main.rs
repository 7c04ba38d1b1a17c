#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::install_crypto_provider();
    dora_collector::init_logging();
    match dora_collector::Settings::load(|name| std::env::var(name).ok()) {
        Ok(settings) => match dora_collector::run(settings).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
