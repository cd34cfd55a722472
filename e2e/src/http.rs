//! A minimal plain-HTTP/1.1 GET client for probes, health checks and tests.
//!
//! Pods on the local cluster speak plain HTTP on their loopback pod IPs; this avoids pulling an HTTP client
//! stack into the agent just to read a status code and a short body.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Errors of a GET request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer within the timeout.
    #[error("GET http://{addr}{path} timed out after {timeout:?}")]
    Timeout {
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Connecting, writing or reading failed.
    #[error("GET http://{addr}{path}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The answer was not an HTTP response.
    #[error("GET http://{addr}{path}: malformed response {head:?}")]
    Malformed {
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The first bytes of what came back.
        head: String,
    },
}

/// Status code and body of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, lossily decoded as UTF-8.
    pub body: String,
}

/// GETs `path` from `addr`, reading until the server closes the connection.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let io_err = |source| HttpError::Io {
        addr,
        path: path.to_string(),
        source,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io_err)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: anshin-e2e\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.map_err(io_err)?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.map_err(io_err)?;
        parse(addr, path, &buf)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(HttpError::Timeout {
                addr,
                path: path.to_string(),
                timeout,
            })
        })
}

fn parse(addr: SocketAddr, path: &str, raw: &[u8]) -> Result<HttpResponse, HttpError> {
    let text = String::from_utf8_lossy(raw);
    let malformed = || HttpError::Malformed {
        addr,
        path: path.to_string(),
        head: text.chars().take(80).collect(),
    };
    let status = text
        .split_whitespace()
        .nth(1)
        .filter(|_| text.starts_with("HTTP/"))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(malformed)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(HttpResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 80))
    }

    #[test]
    fn parses_status_and_body() {
        let r = parse(
            addr(),
            "/",
            b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\nnot ready",
        )
        .unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 503,
                body: "not ready".into()
            }
        );
    }

    #[test]
    fn rejects_non_http() {
        assert!(parse(addr(), "/", b"SSH-2.0-OpenSSH").is_err());
    }
}
