//! PromQL instead of scraping: where a Prometheus already scrapes the gateways, the canary's figures
//! can come from its instant-query API (`GET /api/v1/query`). [`Promql::scalar`] runs one expression
//! that yields at most one sample (e.g. a `sum(...)`), within the source's deadline. Not wired into
//! a controller yet; the queries a canary window needs are built by
//! `endpoint::canary::window::WindowQueries`.

use std::time::Duration;

use super::source::{HttpSource, ScrapeError};

/// Why a query gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromqlError {
    /// Prometheus could not be reached or answered an error status.
    #[error("querying Prometheus: {0}")]
    Request(#[from] ScrapeError),
    /// The answer was not a successful instant vector of at most one sample.
    #[error("unexpected Prometheus answer to {query:?}: {why}")]
    Answer {
        /// The expression.
        query: String,
        /// What was wrong.
        why: String,
    },
}

/// A Prometheus server's query API.
#[derive(Clone)]
pub struct Promql {
    base: String,
    http: HttpSource,
}

impl Promql {
    /// Queries the Prometheus at `base_url` (`http://host:9090`), each within `deadline`.
    pub fn new(base_url: &str, deadline: Duration) -> Promql {
        Promql {
            base: base_url.trim_end_matches('/').to_owned(),
            http: HttpSource::new(deadline),
        }
    }

    /// The value of `expr` now; `None` when the vector is empty (no such series yet).
    pub async fn scalar(&self, expr: &str) -> Result<Option<f64>, PromqlError> {
        let url = format!("{}/api/v1/query?query={}", self.base, encode(expr));
        let deadline = self.http.deadline();
        let text = tokio::time::timeout(deadline, self.http.get_text(&url))
            .await
            .unwrap_or(Err(ScrapeError::Timeout(deadline)))?;
        parse_scalar(expr, &text)
    }
}

/// The single value of an instant-vector answer (pure).
pub fn parse_scalar(query: &str, body: &str) -> Result<Option<f64>, PromqlError> {
    let bad = |why: &str| PromqlError::Answer {
        query: query.into(),
        why: why.into(),
    };
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| bad(&e.to_string()))?;
    if v["status"] != "success" {
        return Err(bad(v["error"].as_str().unwrap_or("status is not success")));
    }
    if v["data"]["resultType"] != "vector" {
        return Err(bad("not an instant vector"));
    }
    let result = v["data"]["result"]
        .as_array()
        .ok_or_else(|| bad("no result"))?;
    match result.as_slice() {
        [] => Ok(None),
        [one] => {
            let text = one["value"][1].as_str().ok_or_else(|| bad("no value"))?;
            let value = match text {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                t => t.parse().map_err(|_| bad("value is not a number"))?,
            };
            Ok(Some(value))
        }
        _ => Err(bad("more than one series: aggregate with sum(...)")),
    }
}

/// Percent-encodes a query parameter (everything but unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_an_empty_vector_and_errors() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"0.25"]}]}}"#;
        assert_eq!(parse_scalar("q", one), Ok(Some(0.25)));
        let none = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_scalar("q", none), Ok(None));
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(matches!(
            parse_scalar("q", two),
            Err(PromqlError::Answer { .. })
        ));
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let Err(PromqlError::Answer { why, .. }) = parse_scalar("q", error) else {
            panic!("an error answer")
        };
        assert_eq!(why, "parse error");
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode(r#"sum(x{a="b/c"})"#),
            "sum%28x%7Ba%3D%22b%2Fc%22%7D%29"
        );
    }
}
