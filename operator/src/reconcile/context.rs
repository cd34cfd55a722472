//! What every reconcile is handed: the API client, the Event recorder, metrics, the operator's
//! settings, the standing warnings already published and the per-object failure counts behind the
//! backoff. Built once by the runtime when this replica becomes leader.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use super::Backoff;
use super::events::Warnings;
use crate::metrics::Metrics;
use crate::names::FIELD_MANAGER;
use crate::policy::HostPathPolicy;

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image that runs the verification Jobs (`anshin-inference verify`); pinned by tag or digest.
    pub verifier_image: String,
    /// Node directories `file://` artifacts may use.
    pub host_paths: HostPathPolicy,
    /// Who may call the model servers (the NetworkPolicy of every endpoint).
    pub network: crate::endpoint::backend_access::NetworkSettings,
}

/// Shared state of the controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Events on the objects (through [`super::events::publish`]).
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub settings: Settings,
    /// The standing warning of each object, so that it is published once.
    pub warnings: Warnings,
    /// Consecutive failures per object, for the error policy's backoff.
    pub backoff: Backoff,
}

impl Context {
    /// A context for `client`, reporting Events as `anshin-operator` from `instance`.
    pub fn new(
        client: Client,
        metrics: Metrics,
        settings: Settings,
        instance: String,
    ) -> Arc<Context> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(instance),
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            warnings: Warnings::default(),
            backoff: Backoff::default(),
        })
    }
}
