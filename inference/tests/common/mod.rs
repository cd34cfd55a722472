//! Helpers shared by the integration tests: the tiny fixture model, a minimal HTTP/1.1 client over
//! loopback, an in-process server, and the incremental-detokenization check.
#![allow(dead_code)]

pub mod fake_engine;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anshin_inference::cli::ServeArgs;

/// Writes the fixture in Hugging Face layout under `dir/hf` and returns that directory.
pub fn hf_fixture(dir: &Path) -> PathBuf {
    anshin_inference::fixture::write_hf(&dir.join("hf"), false).expect("fixture model written")
}

/// Serve flags for `model` on an ephemeral loopback port.
pub fn serve_args(model: &Path) -> ServeArgs {
    ServeArgs {
        model: model.to_path_buf(),
        manifest: None,
        listen: "127.0.0.1:0".parse().expect("address"),
        model_id: Some("tiny".into()),
        max_batch: 8,
        max_waiting: 16,
        kv_cache_mib: 64,
        prefill_chunk: 64,
        no_prefix_cache: false,
        max_context: None,
        default_max_tokens: 16,
        drain_timeout: Duration::from_secs(5),
        api_key_file: None,
        faults: Default::default(),
    }
}

/// A server process this test started; killed (by its own handle) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // Only the child this test started, by its own handle.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Waits (at most `timeout`) for the process to exit; its status.
pub fn wait_exit(p: &mut Proc, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(s)) = p.0.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A response read to the end.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    read_reply(send(addr, method, path, body))
}

fn read_reply(mut s: TcpStream) -> Reply {
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Opens a connection and writes a request; the caller reads the response.
pub fn send(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> TcpStream {
    send_with(addr, method, path, body, "")
}

/// The header line that presents `key` as a bearer token.
pub fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}\r\n")
}

/// [`http`] with extra header lines (each ending in `\r\n`).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &str,
) -> Reply {
    read_reply(send_with(addr, method, path, body, headers))
}

/// [`send`] with extra header lines (each ending in `\r\n`).
pub fn send_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &str,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write request");
    s
}

/// The `data:` payloads of a server-sent-event body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Reads SSE `data:` lines from a live stream until `n` were seen (or the stream ends).
pub fn read_sse_lines(reader: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(d) = line.trim_end().strip_prefix("data: ") {
                    out.push(d.to_owned());
                }
            }
        }
    }
    out
}

/// Polls `GET path` until it answers `status` (at most `timeout`).
pub fn wait_for(addr: SocketAddr, path: &str, status: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(addr).is_ok() && http(addr, "GET", path, None).status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Feeds `text`'s tokens and then 200 random ones (which may form broken characters) to a
/// [`anshin_inference::detok::Detokenizer`] one at a time: after each, its text must be the whole
/// output's decoding up to the last complete character.
pub fn assert_incremental_text_matches_whole(
    tok: &anshin_inference::tokenizer::TextTokenizer,
    text: &str,
) {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut ids = tok.encode(text).expect("encode");
    let mut rng = StdRng::seed_from_u64(3);
    let vocab = tok.vocab_size() as u32;
    ids.extend((0..200).map(|_| rng.random_range(0..vocab)));
    let mut d = anshin_inference::detok::Detokenizer::new();
    for n in 1..=ids.len() {
        d.update(tok, &ids[..n]).expect("decode");
        let whole = tok.decode(&ids[..n]).expect("decode");
        assert!(
            whole.starts_with(d.text()),
            "after {n} tokens: {:?} is not a prefix of {whole:?}",
            d.text()
        );
        if !whole.ends_with('\u{FFFD}') {
            assert_eq!(d.text(), whole, "after {n} tokens");
        }
    }
}

/// Clinical Japanese with ASCII, for detokenization checks.
pub const DETOK_TEXT: &str =
    "患者は65歳男性。 発熱と咳嗽があり、セフトリアキソンを開始した。Take one tablet daily.";
