//! The floor of the gateway's HTTP stack, for the overhead benchmark: a reverse proxy on the same
//! hyper server and hyper-util pooled client as the gateway, with nothing else — no axum router, no
//! keys, limits, guardrails, metrics or audit. It forwards every request's method, path, headers and body
//! to the first backend of the routing file and relays the answer.
//!
//! It takes the gateway's command line, so the benchmark can run it in the gateway's place:
//!
//! ```sh
//! cargo build --profile production -p anshin-gateway --example bare_proxy
//! BENCH_GATEWAY_BIN=$CARGO_TARGET_DIR/production/examples/bare_proxy \
//!   BENCH_PATHS=gateway_guardrails_off cargo bench --profile production -p anshin-gateway --bench overhead
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// `--listen ADDR` and the first `host:port` in the `--routing-file`'s backends.
fn args() -> Result<(SocketAddr, String), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .ok_or(format!("{flag} is required"))
    };
    let listen = value("--listen")?.parse()?;
    let routing = std::fs::read_to_string(value("--routing-file")?)?;
    let backend = routing
        .split("backends: ['")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .ok_or("no `backends: ['host:port']` in the routing file")?
        .to_owned();
    Ok((listen, backend))
}

async fn forward(
    client: HttpClient,
    backend: &str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if req.uri().path() == "/readyz" {
        return Ok(Response::new(Full::new(Bytes::from_static(b"ok"))));
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder()
        .method(parts.method)
        .uri(format!("http://{backend}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST {
            out = out.header(name, value);
        }
    }
    let Ok(out) = out.body(Full::new(body)) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(resp) = client.request(out).await else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, backend) = args()?;
    let backend: &'static str = Box::leak(backend.into_boxed_str());
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(conn);
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), backend, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
