//! `anshin-guardrails`: scan JSON lines for Japanese PII, build the dictionary, evaluate, benchmark.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use anshin_guardrails::{Detector, Dictionary, bench, cli};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "anshin-guardrails",
    version,
    about = "Japanese PII detection and redaction"
)]
struct Args {
    /// Dictionary directory (default: $ANSHIN_GUARDRAILS_DICT or ~/.cache/anshin/guardrails/ipadic).
    #[arg(long, global = true)]
    dict: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read `{"id","text"}` JSON lines on stdin, write entities and redacted text as JSON lines.
    Scan,
    /// Compile UTF-8 IPADIC sources into the dictionary directory.
    BuildDict {
        /// Directory holding the UTF-8 IPADIC *.csv, matrix.def, char.def and unk.def.
        #[arg(long)]
        ipadic: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmark: throughput, 4 KB-note latency and dev-set scores, with the Presidio peer's figures
    /// from `guardrails/bench/presidio_peer.py` when given. Prints JSON.
    Bench {
        /// Labelled file (pii-dev.jsonl format).
        #[arg(long)]
        data: PathBuf,
        /// JSON written by the peer script in the same run.
        #[arg(long)]
        peer: Option<PathBuf>,
        /// Seconds of throughput measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Timed runs of the 4 KB note.
        #[arg(long, default_value_t = 2000)]
        latency_runs: usize,
    },
    /// Print the analyser's tokens (surface, IPADIC feature) for each line of stdin.
    Analyse,
    /// Score detection on a labelled JSON-lines file; prints JSON (misses with --misses).
    Eval {
        /// Labelled file (pii-dev.jsonl format).
        #[arg(long)]
        data: PathBuf,
        /// Also print every missed gold entity and false positive.
        #[arg(long)]
        misses: bool,
    },
}

fn load(dict: Option<PathBuf>) -> Result<Detector, String> {
    let d = match dict {
        Some(dir) => Dictionary::load(&dir),
        None => Dictionary::load_default(),
    };
    d.map(Detector::new).map_err(|e| e.to_string())
}

fn run(args: Args) -> Result<(), String> {
    match args.command {
        Command::Scan => {
            let det = load(args.dict)?;
            let stdin = BufReader::new(std::io::stdin().lock());
            let stdout = BufWriter::new(std::io::stdout().lock());
            cli::scan(&det, stdin, stdout).map_err(|e| format!("scan: {e}"))?;
        }
        Command::Bench {
            data,
            peer,
            seconds,
            latency_runs,
        } => {
            let det = load(args.dict)?;
            let gold = cli::read_gold(&data)?;
            let ours = bench::measure(
                &det,
                &gold,
                Duration::from_secs_f64(seconds.max(0.1)),
                latency_runs.max(1),
            );
            let mut out = serde_json::json!({
                "machine": { "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
                             "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim() },
                "data": data.display().to_string(),
                "anshin": ours,
            });
            if let Some(p) = peer {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                let run: bench::PeerRun =
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
                out["peer"] = serde_json::to_value(bench::peer_figures(&run, &gold))
                    .map_err(|e| e.to_string())?;
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
            );
        }
        Command::Analyse => {
            let det = load(args.dict)?;
            for line in std::io::stdin().lines() {
                let line = line.map_err(|e| format!("analyse: {e}"))?;
                for (surface, feature) in det.analyse(&line) {
                    println!("{surface}\t{feature}");
                }
                println!("EOS");
            }
        }
        Command::BuildDict { ipadic, out } => {
            Dictionary::build(&ipadic, &out).map_err(|e| e.to_string())?;
            eprintln!("dictionary written to {}", out.display());
        }
        Command::Eval { data, misses } => {
            let det = load(args.dict)?;
            let gold = cli::read_gold(&data)?;
            let (scores, miss) = cli::evaluate(&det, &gold);
            let mut out = serde_json::json!({ "scores": scores });
            if misses {
                out["misses"] = serde_json::to_value(&miss).map_err(|e| e.to_string())?;
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anshin-guardrails: {e}");
            ExitCode::FAILURE
        }
    }
}
