//! One controller per kind. Each reads, calls a pure function of the crate, applies, and writes status.

pub mod endpoint;
pub mod model_version;
pub mod tenant;

/// Resolves when the controllers must stop (SIGTERM or lost leadership); cloneable for each controller.
pub type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;
