//! `anshin-gateway`: parses the command line and runs it (see [`anshin_gateway::cli`]).

use clap::Parser;

fn main() -> std::process::ExitCode {
    anshin_gateway::cli::main(anshin_gateway::cli::Cli::parse())
}
