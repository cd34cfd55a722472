use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    anshin_inference::telemetry::init();
    match anshin_inference::cli::run(anshin_inference::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
