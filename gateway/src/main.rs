//! `anshin-gateway`: parses the command line and runs it (see [`anshin_gateway::cli`]).

use clap::Parser;

/// Huge pages for the guardrails dictionary (see [`anshin_gateway::huge_pages`]).
#[global_allocator]
static ALLOC: anshin_gateway::huge_pages::HugePageAlloc = anshin_gateway::huge_pages::HugePageAlloc;

fn main() -> std::process::ExitCode {
    anshin_gateway::cli::main(anshin_gateway::cli::Cli::parse())
}
