//! The OpenAI-compatible HTTP server: routes, readiness, and drain on shutdown.
//!
//! The server listens before the model is loaded so that `/healthz` answers during a long load;
//! `/readyz` turns 200 only once [`AppState::set_engine`] ran after a warm-up generation. On shutdown
//! it turns unready at once, answers new API requests with 503, waits for in-flight requests up to the
//! drain timeout, then returns.

pub mod api;
pub mod error;
mod routes;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::chat_template::ChatTemplate;
use crate::metrics::Metrics;
use crate::scheduler::{GenEvent, GenerateRequest, SchedulerHandle, SubmitError};
use crate::tokenizer::TextTokenizer;
use error::ApiError;

/// What the HTTP layer needs from the engine: accept a tokenized request and stream its events. The
/// scheduler ([`SchedulerHandle`]) is the real one; the HTTP layer's own tests use a scripted fake, so
/// request mapping, SSE framing and error statuses are tested without a model.
pub trait Generate: Send + Sync {
    /// Queues `req`; its events arrive on the receiver, and dropping the receiver cancels it.
    fn submit(&self, req: GenerateRequest) -> Result<UnboundedReceiver<GenEvent>, SubmitError>;
}

impl Generate for SchedulerHandle {
    fn submit(&self, req: GenerateRequest) -> Result<UnboundedReceiver<GenEvent>, SubmitError> {
        SchedulerHandle::submit(self, req)
    }
}

/// The loaded model as the HTTP layer uses it.
pub struct Engine {
    /// The generator (the scheduler, or a fake in tests).
    pub handle: Arc<dyn Generate>,
    /// Tokenizer (prompts are tokenized on the request's task).
    pub tokenizer: Arc<TextTokenizer>,
    /// Chat template.
    pub template: ChatTemplate,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
}

/// Readiness, draining and the in-flight count.
#[derive(Default)]
pub struct Lifecycle {
    ready: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Lifecycle {
    /// Whether `/readyz` should answer 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests accepted and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Counts one request as in flight until dropped (when its response, streamed or not, is done).
pub struct InFlight {
    state: AppState,
}

impl InFlight {
    fn new(state: &AppState) -> Self {
        state.lifecycle.in_flight.fetch_add(1, Ordering::SeqCst);
        state.metrics.in_flight.inc();
        Self {
            state: state.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state
            .lifecycle
            .in_flight
            .fetch_sub(1, Ordering::SeqCst);
        self.state.metrics.in_flight.dec();
    }
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    engine: Arc<OnceLock<Engine>>,
    /// Readiness and drain state.
    pub lifecycle: Arc<Lifecycle>,
    /// Metrics.
    pub metrics: Metrics,
    /// The name `/v1/models` reports.
    pub model_id: Arc<str>,
    next_id: Arc<AtomicU64>,
}

impl AppState {
    /// State for a server whose model is not loaded yet.
    pub fn new(model_id: &str, metrics: Metrics) -> Self {
        Self {
            engine: Arc::new(OnceLock::new()),
            lifecycle: Arc::new(Lifecycle::default()),
            metrics,
            model_id: model_id.into(),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Installs the warmed-up engine and marks the server ready.
    pub fn set_engine(&self, engine: Engine) {
        if self.engine.set(engine).is_ok() {
            self.lifecycle.ready.store(true, Ordering::SeqCst);
            self.metrics.ready.set(1);
        }
    }

    /// Turns the server unready; new API requests get 503 from now on.
    pub fn start_draining(&self) {
        self.lifecycle.draining.store(true, Ordering::SeqCst);
        self.metrics.ready.set(0);
    }

    /// The engine for a new request, counting it in flight; 503 while loading or draining.
    fn admit(&self) -> Result<(&Engine, InFlight), ApiError> {
        let guard = InFlight::new(self);
        if self.lifecycle.is_draining() {
            return Err(ApiError::Draining);
        }
        let engine = self.engine.get().ok_or(ApiError::NotReady)?;
        Ok((engine, guard))
    }

    fn request_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains for at most `drain_timeout`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()>,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = routes::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown.await;
    state.start_draining();
    tracing::info!(
        in_flight = state.lifecycle.in_flight(),
        timeout_s = drain_timeout.as_secs_f64(),
        "draining"
    );
    let deadline = tokio::time::Instant::now() + drain_timeout;
    while state.lifecycle.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = state.lifecycle.in_flight();
    tracing::info!(unfinished = left, "drain finished; stopping the listener");
    let _ = stop_tx.send(());
    // Idle keep-alive connections close at once; anything still open is cut after a short grace period.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}
