//! A small parser of the Prometheus text exposition format (version 0.0.4), enough for the figures the
//! operator reads: the gateway's `anshin_gateway_*` counters and histograms and the model servers'
//! engine metrics. `# HELP`/`# TYPE` lines and blank lines are skipped; each sample line becomes a
//! [`Sample`] with its labels unescaped. A malformed line fails the whole scrape, so a reader never
//! acts on half a page.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value [timestamp]` (the timestamp is not kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, with its `_bucket`/`_sum`/`_count`/`_total` suffix as exposed.
    pub name: String,
    /// Label names and unescaped values.
    pub labels: BTreeMap<String, String>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Why a page of metrics could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the metrics page is not in the Prometheus text format: {why}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub why: &'static str,
}

/// Parses a whole page of the text format.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| parse_line(l.trim()).map_err(|why| ParseError { line: i + 1, why }))
        .collect()
}

fn parse_line(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("invalid metric name");
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end + 1..])?
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let value = rest.split_whitespace().next().ok_or("no value")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Labels up to the closing `}`, and what follows it.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without `=`")?;
        let name = s[..eq].trim();
        if !valid_name(name) {
            return Err("invalid label name");
        }
        let quoted = s[eq + 1..].trim_start();
        let body = quoted.strip_prefix('"').ok_or("label value not quoted")?;
        let (value, rest) = unescape(body)?;
        labels.insert(name.to_owned(), value);
        s = rest.trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The label value up to its closing quote, unescaped, and what follows the quote.
fn unescape(s: &str) -> Result<(String, &str), &'static str> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next().map(|(_, e)| e) {
                Some('n') => out.push('\n'),
                Some(e @ ('\\' | '"')) => out.push(e),
                _ => return Err("invalid escape in a label value"),
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value")
}

fn parse_value(s: &str) -> Result<f64, &'static str> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| "value is not a number"),
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    use super::*;

    /// A page as the gateway serves it: the same metric names, labels and encoder
    /// (`gateway/src/metrics.rs`).
    fn gateway_page() -> String {
        let r = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("anshin_gateway_requests_total", "Requests by outcome"),
            &["tenant", "endpoint", "version", "status_class"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "anshin_gateway_request_duration_seconds",
                "Whole request latency",
            )
            .buckets(vec![0.05, 0.1, 0.5, 1.0]),
            &["endpoint"],
        )
        .expect("metric");
        r.register(Box::new(requests.clone())).expect("register");
        r.register(Box::new(latency.clone())).expect("register");
        requests
            .with_label_values(&["hospital-a", "chat", "med-ja-v2", "2xx"])
            .inc_by(97);
        requests
            .with_label_values(&["hospital-a", "chat", "med-ja-v3", "5xx"])
            .inc_by(3);
        for s in [0.04, 0.3, 0.7] {
            latency.with_label_values(&["chat"]).observe(s);
        }
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut buf)
            .expect("encode");
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn reads_the_gateways_counters_and_histograms() {
        let samples = parse(&gateway_page()).expect("parses");
        let errors: f64 = samples
            .iter()
            .filter(|s| s.name == "anshin_gateway_requests_total")
            .filter(|s| s.label("version") == Some("med-ja-v3"))
            .filter(|s| s.label("status_class") == Some("5xx"))
            .map(|s| s.value)
            .sum();
        assert_eq!(errors, 3.0);
        let bucket = |le: &str| {
            samples
                .iter()
                .find(|s| {
                    s.name == "anshin_gateway_request_duration_seconds_bucket"
                        && s.label("le") == Some(le)
                })
                .map(|s| s.value)
        };
        assert_eq!(bucket("0.5"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(3.0));
        let count = samples
            .iter()
            .find(|s| s.name == "anshin_gateway_request_duration_seconds_count")
            .map(|s| s.value);
        assert_eq!(count, Some(3.0));
    }

    #[test]
    fn unescapes_labels_and_reads_special_values_and_timestamps() {
        let page = "# HELP x X\n# TYPE x gauge\n\
                    x{path=\"C:\\\\models\",note=\"say \\\"hi\\\"\\n\"} +Inf 1700000000000\n\
                    y NaN\nz -1.5e3\n";
        let samples = parse(page).expect("parses");
        assert_eq!(samples[0].label("path"), Some("C:\\models"));
        assert_eq!(samples[0].label("note"), Some("say \"hi\"\n"));
        assert_eq!(samples[0].value, f64::INFINITY);
        assert!(samples[1].value.is_nan() && samples[1].labels.is_empty());
        assert_eq!(samples[2].value, -1500.0);
    }

    #[test]
    fn a_malformed_line_fails_the_page_and_names_the_line() {
        for (page, line) in [
            ("ok 1\nbroken{a=\"1\" 2\n", 2),
            ("x{a=1} 2\n", 1),
            ("x 1\n\ny two\n", 3),
            ("9x 1\n", 1),
            ("x\n", 1),
        ] {
            let err = parse(page).expect_err(page);
            assert_eq!(err.line, line, "{page:?}: {err}");
        }
    }
}
