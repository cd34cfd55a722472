//! The official `openai` Python client against the real binary (chat, streaming chat, completions).
//! Needs the Python environment that scripts/setup.d/30-inference.sh creates; fails naming it when absent.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `$ANSHIN_INFERENCE_PYTHON`, else `~/.cache/anshin/pyenv-inference/bin/python`.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ANSHIN_INFERENCE_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/anshin/pyenv-inference/bin/python")
}

#[test]
fn official_openai_python_client_works() {
    let py = python();
    assert!(
        py.is_file(),
        "{} not found — run scripts/setup.sh (step 30-inference.sh) or set ANSHIN_INFERENCE_PYTHON",
        py.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let model = common::hf_fixture(dir.path());
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_anshin-inference"))
            .args([
                "serve",
                "--model-id",
                "tiny",
                "--listen",
                &addr.to_string(),
                "--model",
            ])
            .arg(&model)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start anshin-inference"),
    );
    assert!(
        common::wait_for(addr, "/readyz", 200, Duration::from_secs(60)),
        "server never became ready"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(&py)
        .arg(script)
        .arg(format!("http://{addr}"))
        .arg("tiny")
        .output()
        .expect("run python");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "openai client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
}
