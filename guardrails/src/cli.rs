//! The work behind the `anshin-guardrails` subcommands (the binary only parses arguments).
//!
//! `scan` reads JSON lines `{"id": "...", "text": "..."}` and writes one JSON line per input line:
//! `{"id", "entities": [{"type", "start", "end", "text"}], "redacted"}`, or for a bad line
//! `{"line": N, "error": "..."}` (with `id` when it could be read) — and carries on.

use std::io::{self, BufRead, Write};

use serde::Serialize;
use serde_json::Value;

use crate::detector::Detector;
use crate::entity::Entity;
use crate::eval::{GoldRecord, Miss, Scores, score};

/// Longest input line accepted by `scan` (bytes); longer lines get an error line.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Serialize)]
struct ScanOut<'a> {
    id: &'a Value,
    entities: Vec<Entity>,
    redacted: String,
}

#[derive(Serialize)]
struct ScanError<'a> {
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    error: String,
}

/// Counts of a `scan` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Lines scanned successfully.
    pub ok: usize,
    /// Lines answered with an error line.
    pub errors: usize,
}

/// Runs `scan` from `input` to `output`. Only I/O errors on the streams stop it.
pub fn scan(
    detector: &Detector,
    mut input: impl BufRead,
    mut output: impl Write,
) -> io::Result<ScanStats> {
    let mut stats = ScanStats::default();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = read_line_capped(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let result = scan_line(detector, &buf, line_no);
        match result {
            Ok(line) => {
                stats.ok += 1;
                writeln!(output, "{line}")?;
            }
            Err(err_line) => {
                stats.errors += 1;
                writeln!(output, "{err_line}")?;
            }
        }
    }
    output.flush()?;
    Ok(stats)
}

/// Reads one line (without its newline) into `buf`, discarding bytes past [`MAX_LINE_BYTES`] but
/// keeping one extra byte so the caller sees that it was too long. Returns bytes consumed.
fn read_line_capped(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut consumed = 0;
    loop {
        let avail = match input.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(avail.len());
        input.consume(used);
        consumed += used;
        if done.is_some() {
            return Ok(consumed);
        }
    }
}

fn error_line(line: usize, id: Option<&Value>, error: impl Into<String>) -> String {
    serde_json::to_string(&ScanError {
        line,
        id,
        error: error.into(),
    })
    .unwrap_or_else(|_| format!("{{\"line\":{line},\"error\":\"unserialisable error\"}}"))
}

fn scan_line(detector: &Detector, raw: &[u8], line_no: usize) -> Result<String, String> {
    if raw.len() > MAX_LINE_BYTES {
        return Err(error_line(
            line_no,
            None,
            format!("line longer than {MAX_LINE_BYTES} bytes"),
        ));
    }
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = std::str::from_utf8(raw).map_err(|e| {
        error_line(
            line_no,
            None,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| error_line(line_no, None, format!("invalid JSON: {e}")))?;
    let id = value.get("id");
    let Some(input) = value.get("text").and_then(Value::as_str) else {
        return Err(error_line(line_no, id, "missing string field \"text\""));
    };
    let red = detector.redact(input);
    let out = ScanOut {
        id: id.unwrap_or(&Value::Null),
        entities: red.entities,
        redacted: red.text,
    };
    serde_json::to_string(&out)
        .map_err(|e| error_line(line_no, id, format!("cannot serialise result: {e}")))
}

/// Reads a labelled JSON-lines file (the dev set format).
pub fn read_gold(path: &std::path::Path) -> Result<Vec<GoldRecord>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Detects on every record and scores the result.
pub fn evaluate(detector: &Detector, gold: &[GoldRecord]) -> (Scores, Vec<Miss>) {
    let preds: Vec<Vec<Entity>> = gold.iter().map(|r| detector.detect(&r.text)).collect();
    score(gold.iter().zip(preds.iter().map(Vec::as_slice)))
}
