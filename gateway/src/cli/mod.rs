//! Command line: `serve`, `verify` (an audit chain) and `hash-key` (API keys and peer tokens). `main.rs`
//! only parses and calls [`main`]. The flags and their parsers are in [`args`], what `serve` starts in
//! [`serve`].

mod args;
mod serve;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::{ChainKey, VerifyOptions, verify_log};
use crate::keys::{fingerprint, hash_key};

pub use args::{ServeArgs, VerifyArgs, parse_bytes, parse_duration, parse_peer};
pub use serve::serve;

/// Anshin gateway.
#[derive(Parser, Debug)]
#[command(name = "anshin-gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the OpenAI-compatible endpoint.
    Serve(Box<ServeArgs>),
    /// Verify an audit log's hash chain (its rotated files first); exit 0 when intact, 1 at the
    /// first broken record or when it ends before a published head.
    Verify(VerifyArgs),
    /// Read an API key or peer token from stdin; print its sha256 (for the routing file or
    /// `--accept-peer-token-file`) and fingerprint.
    HashKey,
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            let telemetry = match crate::telemetry::init(args.otlp_endpoint.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ERROR: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = tokio::runtime::Runtime::new()
                .context("starting the tokio runtime")
                .and_then(|rt| rt.block_on(serve(*args)));
            telemetry.shutdown();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ERROR: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Verify(args) => verify(&args),
        Command::HashKey => {
            let mut key = String::new();
            if std::io::stdin().read_line(&mut key).is_err() {
                eprintln!("ERROR: could not read the key from stdin");
                return ExitCode::FAILURE;
            }
            let h = hash_key(key.trim_end_matches(['\n', '\r']));
            println!(
                "sha256: {}\nfingerprint: {}",
                hex::encode(h),
                fingerprint(&h)
            );
            ExitCode::SUCCESS
        }
    }
}

/// `verify`: prints `OK: …`, `BROKEN: …` or `TRUNCATED: …`.
fn verify(args: &VerifyArgs) -> ExitCode {
    let key = match &args.hmac_key_file {
        Some(p) => match ChainKey::load(p) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("ERROR: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => ChainKey::none(),
    };
    let opts = VerifyOptions {
        key,
        head: args.head.clone(),
        allow_pruned: args.allow_pruned,
    };
    let path = args.path.display();
    match verify_log(&args.path, &opts) {
        Ok(v) => {
            let head = match &args.head {
                Some(h) => format!(", reaches the published head seq {}", h.seq),
                None => String::new(),
            };
            println!(
                "OK: {} records (seq {}..{}) in {} file(s), chain intact{head} ({path})",
                v.records, v.first_seq, v.last.seq, v.files
            );
            ExitCode::SUCCESS
        }
        Err(e @ crate::audit::VerifyError::Truncated { .. }) => {
            println!("TRUNCATED: {path}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("BROKEN: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::OnFailure;

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_zero_or_junk() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("2K"), Ok(2048));
        assert_eq!(parse_bytes("100M"), Ok(100 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        for bad in ["0", "", "M", "10MB", "1.5G", "-1", "99999999999999999999G"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audit_flags_default_to_reject_100_mib_keep_all_and_a_minute_head() {
        let cli = Cli::try_parse_from(["anshin-gateway", "serve", "--routing-file", "r.yaml"])
            .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!(args.audit_on_failure, OnFailure::Reject);
        assert_eq!(args.audit_queue_capacity, 10_000);
        assert_eq!(args.audit_max_bytes, 100 << 20);
        assert_eq!(args.audit_keep, 0);
        assert_eq!(args.audit_head_interval, Duration::from_secs(60));
        assert_eq!(args.audit_unauthenticated_interval, Duration::from_secs(10));
        let bad = [
            "anshin-gateway",
            "serve",
            "--routing-file",
            "r",
            "--audit-on-failure",
            "drop",
        ];
        assert!(Cli::try_parse_from(bad).is_err());
    }

    #[test]
    fn peers_flag_takes_an_optional_residency_and_refuses_plain_http_off_loopback() {
        let ok = parse_peer("https://gw.osaka.example:8443=jp").expect("valid");
        assert_eq!(
            (ok.url.as_str(), ok.residency.as_deref()),
            ("https://gw.osaka.example:8443", Some("jp"))
        );
        let plain = parse_peer("http://127.0.0.1:9000/").expect("loopback");
        assert_eq!(
            (plain.url.as_str(), plain.residency),
            ("http://127.0.0.1:9000", None)
        );
        for bad in [
            "http://gw.osaka.example:8080",
            "https://gw=JP",
            "gw.osaka.example",
        ] {
            assert!(parse_peer(bad).is_err(), "{bad}");
        }
    }
}
