//! The OpenAI-compatible HTTP server: routes, readiness, and drain on shutdown.
//!
//! The server listens before the model is loaded so that `/healthz` answers during a long load;
//! `/readyz` turns 200 only once [`AppState::set_engine`] ran after a warm-up generation. On shutdown
//! it turns unready at once, answers new API requests with 503, waits for in-flight requests up to the
//! drain timeout, then returns. If the engine stops for good (its thread died), `/healthz` and `/readyz`
//! turn 503 and [`run`] returns [`ServeError::EngineStopped`] after a short grace, so the process exits
//! non-zero and is restarted instead of answering every request with an error while it looks healthy.

pub mod api;
pub mod auth;
pub mod error;
pub mod faults;
mod routes;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::chat_template::ChatTemplate;
use crate::metrics::Metrics;
use crate::scheduler::{GenEvent, GenerateRequest, SchedulerHandle, SubmitError};
use crate::tokenizer::TextTokenizer;
use auth::ApiKey;
use error::ApiError;
use faults::{FaultPlan, Faults};

/// What the HTTP layer needs from the engine: accept a tokenized request and stream its events. The
/// scheduler ([`SchedulerHandle`]) is the real one; the HTTP layer's own tests use a scripted fake, so
/// request mapping, SSE framing and error statuses are tested without a model.
pub trait Generate: Send + Sync {
    /// Queues `req`; its events arrive on the receiver, and dropping the receiver cancels it.
    fn submit(&self, req: GenerateRequest) -> Result<UnboundedReceiver<GenEvent>, SubmitError>;

    /// Resolves, with the reason, once the engine has stopped for good; pending while it runs.
    fn stopped(&self) -> BoxFuture<'static, String>;
}

impl Generate for SchedulerHandle {
    fn submit(&self, req: GenerateRequest) -> Result<UnboundedReceiver<GenEvent>, SubmitError> {
        SchedulerHandle::submit(self, req)
    }

    fn stopped(&self) -> BoxFuture<'static, String> {
        Box::pin(SchedulerHandle::stopped(self))
    }
}

/// Why [`run`] ended other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine stopped for good; the process should exit so that it is restarted.
    #[error("the inference engine stopped ({0}); exiting so that the pod is restarted")]
    EngineStopped(String),
}

/// How long the server stays up after its engine died (at most the drain timeout): failed requests send
/// their error answers, probes and new requests get 503 with the reason, then the listener closes.
const ENGINE_STOPPED_GRACE: Duration = Duration::from_secs(2);

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

/// Readiness, draining, engine failure and the in-flight count.
#[derive(Default)]
pub struct Lifecycle {
    ready: AtomicBool,
    draining: AtomicBool,
    failed: AtomicBool,
    in_flight: AtomicUsize,
}

impl Lifecycle {
    /// Whether `/readyz` should answer 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
            && !self.is_failed()
    }

    /// Whether the engine has stopped for good (`/healthz` and `/readyz` answer 503).
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
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
    /// Wakes [`AppState::engine_stopped`] when the engine is installed.
    engine_set: Arc<Notify>,
    /// The key every API request must present ([`auth`]); none: the API is open.
    api_key: Option<Arc<ApiKey>>,
    /// Readiness and drain state.
    pub lifecycle: Arc<Lifecycle>,
    /// Metrics.
    pub metrics: Metrics,
    /// The name `/v1/models` reports.
    pub model_id: Arc<str>,
    /// Test-only faults in answers ([`faults`]); off unless [`AppState::with_faults`] was called.
    faults: Arc<Faults>,
    next_id: Arc<AtomicU64>,
}

impl AppState {
    /// State for a server whose model is not loaded yet.
    pub fn new(model_id: &str, metrics: Metrics) -> Self {
        Self {
            engine: Arc::new(OnceLock::new()),
            engine_set: Arc::new(Notify::new()),
            api_key: None,
            lifecycle: Arc::new(Lifecycle::default()),
            model_id: model_id.into(),
            faults: Arc::new(Faults::off(metrics.clone())),
            metrics,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The same state with test-only faults injected into answers as `plan` says.
    pub fn with_faults(mut self, plan: FaultPlan) -> Self {
        self.faults = Arc::new(Faults::new(plan, self.metrics.clone()));
        self
    }

    /// The same state with API key `key` required on the API and `/metrics`.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(Arc::new(key));
        self
    }

    /// Installs the warmed-up engine and marks the server ready.
    pub fn set_engine(&self, engine: Engine) {
        if self.engine.set(engine).is_ok() {
            self.lifecycle.ready.store(true, Ordering::SeqCst);
            self.metrics.ready.set(1);
            self.engine_set.notify_waiters();
        }
    }

    /// Waits for the engine to be installed and then to stop for good; the reason.
    async fn engine_stopped(&self) -> String {
        let engine = loop {
            let installed = self.engine_set.notified();
            if let Some(engine) = self.engine.get() {
                break engine;
            }
            installed.await;
        };
        engine.handle.stopped().await
    }

    /// Marks the engine dead: health and readiness answer 503, new API requests 503.
    fn engine_failed(&self) {
        self.lifecycle.failed.store(true, Ordering::SeqCst);
        self.metrics.ready.set(0);
    }

    /// Turns the server unready; new API requests get 503 from now on.
    pub fn start_draining(&self) {
        self.lifecycle.draining.store(true, Ordering::SeqCst);
        self.metrics.ready.set(0);
    }

    /// The engine for a new request, counting it in flight; 503 while loading or draining.
    fn admit(&self) -> Result<(&Engine, InFlight), ApiError> {
        let guard = InFlight::new(self);
        if self.lifecycle.is_failed() {
            return Err(ApiError::EngineStopped);
        }
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

/// Serves `state` on `listener` until `shutdown` resolves, then drains for at most `drain_timeout`. If
/// the engine stops for good first, turns unhealthy, lets the failed requests answer for a short grace
/// and returns [`ServeError::EngineStopped`].
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = routes::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let stopped = tokio::select! {
        () = shutdown => None,
        reason = state.engine_stopped() => Some(reason),
    };
    let grace = match &stopped {
        None => drain_timeout,
        Some(reason) => {
            tracing::error!(reason = %reason, "the inference engine stopped; turning unhealthy and exiting");
            state.engine_failed();
            drain_timeout.min(ENGINE_STOPPED_GRACE)
        }
    };
    state.start_draining();
    tracing::info!(
        in_flight = state.lifecycle.in_flight(),
        timeout_s = grace.as_secs_f64(),
        "draining"
    );
    // After an engine failure the server stays up for the whole grace, answering 503 with the reason,
    // so that probes and the gateway see it before the port closes.
    let deadline = tokio::time::Instant::now() + grace;
    while (stopped.is_some() || state.lifecycle.in_flight() > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = state.lifecycle.in_flight();
    tracing::info!(unfinished = left, "drain finished; stopping the listener");
    let _ = stop_tx.send(());
    // Idle keep-alive connections close at once; anything still open is cut after a short grace period.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    match stopped {
        None => Ok(()),
        Some(reason) => Err(ServeError::EngineStopped(reason)),
    }
}
