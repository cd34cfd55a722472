//! The `scan` CLI: output format, error lines that do not stop the run, invalid UTF-8.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use anshin_guardrails::cli;
use serde_json::Value;

fn scan_bytes(input: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    cli::scan(common::detector(), input, &mut out).expect("scan to memory");
    String::from_utf8(out)
        .expect("scan writes UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn scan_writes_entities_with_code_point_offsets_and_redacted_text() {
    let out = scan_bytes(
        "{\"id\": \"a1\", \"text\": \"主治医：河合 俊介、TEL 03-5212-8870\"}\n".as_bytes(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], "a1");
    assert_eq!(out[0]["entities"][0]["type"], "PERSON");
    assert_eq!(out[0]["entities"][0]["start"], 4);
    assert_eq!(out[0]["entities"][0]["end"], 9);
    assert_eq!(out[0]["entities"][0]["text"], "河合 俊介");
    assert_eq!(out[0]["entities"][1]["type"], "PHONE");
    assert_eq!(out[0]["redacted"], "主治医：〔氏名1〕、TEL 〔電話1〕");
}

#[test]
fn bad_lines_get_numbered_error_lines_and_the_run_continues() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"id\": \"1\", \"text\": \"ok\"}\n");
    input.extend_from_slice(b"not json\n");
    input.extend_from_slice(b"{\"id\": \"3\"}\n");
    input.extend_from_slice(b"{\"id\": \"4\", \"text\": \"\xff\xfe\"}\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"{\"id\": \"6\", \"text\": \"\xe6\x82\xa3\"}");
    let out = scan_bytes(&input);
    assert_eq!(out.len(), 6);
    assert_eq!(out[0]["id"], "1");
    assert_eq!(out[1]["line"], 2);
    assert!(
        out[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid JSON"))
    );
    assert_eq!(out[2]["line"], 3);
    assert_eq!(out[2]["id"], "3");
    assert_eq!(out[3]["line"], 4);
    assert!(
        out[3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("UTF-8"))
    );
    assert_eq!(out[4]["line"], 5);
    assert_eq!(out[5]["id"], "6");
    assert_eq!(out[5]["redacted"], "患");
}

#[test]
fn the_binary_scans_stdin_and_survives_garbage() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anshin-guardrails"))
        .arg("scan")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn anshin-guardrails");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"\x00\xc3\x28garbage\n{\"id\":\"x\",\"text\":\"\xe4\xbd\x90\xe8\x97\xa4\xe3\x81\x95\xe3\x82\x93\"}\n").expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[1]["redacted"], "〔氏名1〕さん");
}

#[test]
fn a_missing_dictionary_fails_with_the_setup_instruction() {
    let empty =
        std::env::temp_dir().join(format!("anshin-guardrails-no-dict-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_anshin-guardrails"))
        .arg("scan")
        .env("ANSHIN_GUARDRAILS_DICT", &empty)
        .stdin(Stdio::null())
        .output()
        .expect("run anshin-guardrails");
    let _ = std::fs::remove_dir(&empty);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scripts/setup.sh") && err.contains("ANSHIN_GUARDRAILS_DICT"),
        "{err}"
    );
}
