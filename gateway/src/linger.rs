//! Lingering close: a response sent before the request body was read (a 413 from `Content-Length`,
//! a 404 for an unknown path, a body cut off at the size limit) must not be followed by closing a
//! socket that still has unread request bytes, or the kernel answers with a reset and the client
//! may lose the response it had not read yet.
//!
//! [`linger`] wraps every request body in a [`Tracked`] body that remembers whether it reached its
//! end. When the response is ready and the body did not, the response gets `Connection: close` and a
//! background task reads and discards what the client is still sending — at most
//! [`DRAIN_MAX_BYTES`], for at most [`DRAIN_MAX_TIME`], giving up after [`DRAIN_IDLE`] without data —
//! so the connection then closes cleanly. Nothing is buffered; memory stays bounded.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Most request bytes read and discarded after an early response.
pub const DRAIN_MAX_BYTES: u64 = 8 << 20;
/// Longest time spent draining one request.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);
/// Draining stops when the client sends nothing for this long.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Slot {
    body: Option<Body>,
    ended: bool,
}

/// The request body as the handler sees it; the body itself stays in a slot shared with
/// [`linger`], so that what the handler left unread can still be drained after the response.
struct Tracked(Arc<Mutex<Slot>>);

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut slot = lock(&self.0);
        let Some(body) = slot.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            slot.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let slot = lock(&self.0);
        slot.ended || slot.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0)
            .body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

/// Middleware: runs the request, then drains whatever of its body the handler did not read.
pub async fn linger(req: Request, next: Next) -> Response {
    // A client that sent `Expect: 100-continue` has not sent its body yet and will not, once it has
    // the final response: nothing to drain, and polling the body would invite it to send.
    let expects = req.headers().contains_key(header::EXPECT);
    let (parts, body) = req.into_parts();
    if body.is_end_stream() || expects {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let slot = Arc::new(Mutex::new(Slot {
        body: Some(body),
        ended: false,
    }));
    let tracked = Body::new(Tracked(slot.clone()));
    let mut resp = next.run(Request::from_parts(parts, tracked)).await;
    let rest = {
        let mut s = lock(&slot);
        if s.ended || s.body.as_ref().is_none_or(HttpBody::is_end_stream) {
            None
        } else {
            s.body.take()
        }
    };
    if let Some(rest) = rest {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        tokio::spawn(drain(rest));
    }
    resp
}

/// Reads and discards `body` within the bounds above.
async fn drain(mut body: Body) {
    let deadline = tokio::time::Instant::now() + DRAIN_MAX_TIME;
    let mut read = 0u64;
    while read < DRAIN_MAX_BYTES {
        let idle = (tokio::time::Instant::now() + DRAIN_IDLE).min(deadline);
        match tokio::time::timeout_at(idle, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Ok(None | Some(Err(_))) | Err(_) => return,
        }
    }
}
