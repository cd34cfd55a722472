//! Where metrics pages come from: the [`MetricsSource`] trait, its real implementation
//! ([`HttpSource`]: an HTTP GET with a deadline and a size limit) and a fake ([`FakeSource`]) that
//! serves pages set by a test.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::prometheus::{self, ParseError, Sample};

/// Largest metrics page read; a model server's or gateway's page is a few tens of KiB.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// Why a scrape gave no samples.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    /// The URL cannot be requested.
    #[error("metrics URL {0:?} is not a valid http:// URL")]
    BadUrl(String),
    /// No answer within the deadline.
    #[error("no metrics page within {0:?}")]
    Timeout(Duration),
    /// Connection refused, reset, …
    #[error("cannot fetch the metrics page: {0}")]
    Unreachable(String),
    /// The server answered with a non-2xx status.
    #[error("metrics page answered HTTP {0}")]
    Status(u16),
    /// The page is too large, not UTF-8 or not in the text format.
    #[error("unreadable metrics page: {0}")]
    Page(String),
}

impl From<ParseError> for ScrapeError {
    fn from(e: ParseError) -> Self {
        ScrapeError::Page(e.to_string())
    }
}

/// Reads the samples of one metrics page (a gateway's, a model server's).
pub trait MetricsSource: Send + Sync + 'static {
    /// Fetches and parses the page at `url`.
    fn scrape(&self, url: &str) -> impl Future<Output = Result<Vec<Sample>, ScrapeError>> + Send;
}

/// Scrapes over plain HTTP (the pods' and gateways' `/metrics` inside the cluster).
#[derive(Clone)]
pub struct HttpSource {
    client: Client<HttpConnector, Empty<Bytes>>,
    deadline: Duration,
}

impl HttpSource {
    /// A source whose every scrape (connect, answer and body) must finish within `deadline`.
    pub fn new(deadline: Duration) -> HttpSource {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(deadline));
        HttpSource {
            client: Client::builder(TokioExecutor::new()).build(connector),
            deadline,
        }
    }

    /// The body of `url` as text (http:// only, at most 4 MiB), without the overall deadline.
    pub(crate) async fn get_text(&self, url: &str) -> Result<String, ScrapeError> {
        let uri: hyper::Uri = url.parse().map_err(|_| ScrapeError::BadUrl(url.into()))?;
        if uri.scheme_str() != Some("http") {
            return Err(ScrapeError::BadUrl(url.into()));
        }
        let response = self
            .client
            .get(uri)
            .await
            .map_err(|e| ScrapeError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ScrapeError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_PAGE_BYTES)
            .collect()
            .await
            .map_err(|e| ScrapeError::Page(e.to_string()))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|e| ScrapeError::Page(e.to_string()))
    }

    /// The deadline every request must meet.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    async fn fetch(&self, url: &str) -> Result<Vec<Sample>, ScrapeError> {
        let text = self.get_text(url).await?;
        Ok(prometheus::parse(&text)?)
    }
}

impl MetricsSource for HttpSource {
    async fn scrape(&self, url: &str) -> Result<Vec<Sample>, ScrapeError> {
        tokio::time::timeout(self.deadline, self.fetch(url))
            .await
            .unwrap_or(Err(ScrapeError::Timeout(self.deadline)))
    }
}

/// A source for pure tests: serves the page set for each URL, else [`ScrapeError::Unreachable`].
#[derive(Clone, Default)]
pub struct FakeSource {
    pages: Arc<Mutex<HashMap<String, Result<String, ScrapeError>>>>,
}

impl FakeSource {
    /// Serves `page` (text format) at `url` from now on.
    pub fn serve(&self, url: &str, page: &str) {
        self.set(url, Ok(page.to_owned()));
    }

    /// Fails every scrape of `url` with `error` from now on.
    pub fn fail(&self, url: &str, error: ScrapeError) {
        self.set(url, Err(error));
    }

    fn set(&self, url: &str, page: Result<String, ScrapeError>) {
        if let Ok(mut pages) = self.pages.lock() {
            pages.insert(url.to_owned(), page);
        }
    }
}

impl MetricsSource for FakeSource {
    async fn scrape(&self, url: &str) -> Result<Vec<Sample>, ScrapeError> {
        let page = self.pages.lock().ok().and_then(|p| p.get(url).cloned());
        match page {
            Some(Ok(text)) => Ok(prometheus::parse(&text)?),
            Some(Err(e)) => Err(e),
            None => Err(ScrapeError::Unreachable(format!("nothing served at {url}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A loopback server answering every connection with `response` (or never, when `None`).
    async fn serve(response: Option<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                match response {
                    Some(r) => drop(conn.write_all(r.as_bytes()).await),
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            }
        });
        format!("http://{addr}/metrics")
    }

    #[tokio::test]
    async fn scrapes_a_page_over_http() {
        let body = "# TYPE anshin_gateway_requests_total counter\n\
                    anshin_gateway_requests_total{endpoint=\"chat\",status_class=\"2xx\"} 5\n";
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let url = serve(Some(Box::leak(response.into_boxed_str()))).await;
        let samples = HttpSource::new(Duration::from_secs(5))
            .scrape(&url)
            .await
            .expect("scraped");
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].label("endpoint"), Some("chat"));
        assert_eq!(samples[0].value, 5.0);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_an_error_status_is_reported() {
        let silent = serve(None).await;
        let source = HttpSource::new(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = source.scrape(&silent).await.expect_err("no answer");
        assert_eq!(err, ScrapeError::Timeout(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(5));
        let failing = serve(Some(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ))
        .await;
        assert_eq!(source.scrape(&failing).await, Err(ScrapeError::Status(503)));
        assert!(matches!(
            source.scrape("https://example.invalid/metrics").await,
            Err(ScrapeError::BadUrl(_))
        ));
    }

    #[tokio::test]
    async fn the_fake_serves_what_it_is_given() {
        let fake = FakeSource::default();
        assert!(fake.scrape("http://a/metrics").await.is_err());
        fake.serve("http://a/metrics", "x 1\n");
        assert_eq!(
            fake.scrape("http://a/metrics").await.expect("page")[0].value,
            1.0
        );
        fake.fail("http://a/metrics", ScrapeError::Status(500));
        assert_eq!(
            fake.scrape("http://a/metrics").await,
            Err(ScrapeError::Status(500))
        );
    }
}
