//! `anshin-inference verify` and `manifest`, as the operator's verification Job runs them, and the server
//! refusing to start on a digest mismatch.

mod common;

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_anshin-inference"))
}

#[test]
fn verify_passes_then_names_the_first_tampered_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = common::hf_fixture(dir.path());
    let out = bin()
        .args(["manifest", "--model"])
        .arg(&model)
        .output()
        .expect("run manifest");
    assert!(out.status.success());
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, &out.stdout).expect("write manifest");
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).expect("manifest is JSON");
    assert!(
        entries
            .as_array()
            .expect("list")
            .iter()
            .any(|e| e["path"] == "model.safetensors")
    );

    let ok = bin()
        .args(["verify", "--model"])
        .arg(&model)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .expect("run");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    // Same size, different bytes.
    let cfg = model.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .expect("read")
        .replace("LlamaForCausalLM", "LlamaForCausalLN");
    std::fs::write(&cfg, text).expect("tamper");
    let bad = bin()
        .args(["verify", "--model"])
        .arg(&model)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout.contains("MISMATCH: config.json: sha256"), "{stdout}");

    let serve = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--model"])
        .arg(&model)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .expect("run serve");
    assert_eq!(
        serve.status.code(),
        Some(1),
        "serve must refuse a mismatching model"
    );
    assert!(String::from_utf8_lossy(&serve.stderr).contains("do not match the manifest"));
}

#[test]
fn verify_exits_2_on_an_unreadable_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bin()
        .args(["verify", "--model"])
        .arg(dir.path())
        .arg("--manifest")
        .arg(dir.path().join("none.json"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
