//! `serve --api-key-file`, against the real binary: the server refuses to start with an empty or
//! unreadable key file, and once serving answers the API only to requests that present the key, while
//! health and readiness stay open and the key never appears in the process's arguments.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, bearer, free_port, http, http_with, wait_exit, wait_for};

const KEY: &str = "sk-anshin-backend-9d41be07c2a86f53";

fn serve(model: &Path, key_file: &Path, listen: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anshin-inference"));
    c.args(["serve", "--model"])
        .arg(model)
        .args(["--listen", listen, "--model-id", "tiny", "--api-key-file"])
        .arg(key_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    c
}

#[test]
fn serve_refuses_to_start_with_an_empty_or_unreadable_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty-key");
    std::fs::write(&empty, "\n  \n").expect("write");
    let missing = dir.path().join("no-such-key");
    for (file, says) in [
        (&empty, "is empty"),
        (&missing, "cannot read the API key file"),
    ] {
        // The key is read before the model: a model that does not exist is never reached.
        let child = serve(Path::new("/nonexistent-model"), file, "127.0.0.1:0")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start anshin-inference");
        let mut p = Proc(child);
        let status = wait_exit(&mut p, Duration::from_secs(20)).expect("exits at once");
        assert!(!status.success(), "started with {}", file.display());
        let mut err = String::new();
        if let Some(mut e) = p.0.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut err).expect("stderr");
        }
        assert!(err.contains(says), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
    }
}

#[test]
fn a_served_model_answers_the_api_only_with_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = common::hf_fixture(dir.path());
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write key");
    let addr = free_port();
    let child = serve(&model, &key_file, &addr.to_string())
        .spawn()
        .expect("start anshin-inference");
    let server = Proc(child);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.0.id())).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(KEY),
        "the key is in the process's arguments"
    );
    assert!(
        wait_for(addr, "/readyz", 200, Duration::from_secs(60)),
        "never became ready (readiness needs no key)"
    );
    assert_eq!(http(addr, "GET", "/healthz", None).status, 200);

    let chat = r#"{"messages":[{"role":"user","content":"頭痛があります"}],"max_tokens":3,"temperature":0}"#;
    for (method, path, body) in [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", Some(chat)),
        ("GET", "/metrics", None),
    ] {
        let none = http(addr, method, path, body);
        assert_eq!(none.status, 401, "{path} without a key: {}", none.body);
        assert!(
            none.body.contains("\"authentication_error\""),
            "{}",
            none.body
        );
        let wrong = http_with(addr, method, path, body, &bearer("sk-anshin-guess"));
        assert_eq!(wrong.status, 401, "{path} with a wrong key");
        let right = http_with(addr, method, path, body, &bearer(KEY));
        assert_eq!(right.status, 200, "{path} with the key: {}", right.body);
    }
}
