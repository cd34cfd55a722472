//! The validating admission webhook: the CRDs' CEL rules on every server version, plus checks across
//! objects that no schema can express.
//!
//! Servers before 1.25 do not run CEL `x-kubernetes-validations` (1.20 cannot even store them), so the
//! API server sends every create/update of an Anshin object here; [`validate`] evaluates the same rules
//! with `anshin_crds::schema_check::check_cel` and adds what no schema can express: an
//! InferenceEndpoint's ModelVersion must exist, and a ModelVersion's `file://` artifact must lie under
//! a directory the operator was started with (`--allow-host-path`). The webhook serves TLS
//! ([`tls`]: the listener, and [`tls::self_signed`], a CA and a serving certificate for development
//! clusters), and [`configuration`] registers it with that CA.

pub mod tls;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;

use crate::artifact;
use crate::names::FIELD_MANAGER;
use crate::policy::HostPathPolicy;

/// Name of the ValidatingWebhookConfiguration the operator registers.
pub const CONFIGURATION_NAME: &str = "anshin-operator";

/// Why the webhook could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Certificate generation failed.
    #[error("cannot generate the webhook certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS configuration was refused.
    #[error("invalid webhook TLS material: {0}")]
    Tls(#[from] rustls::Error),
    /// Registration with the API server failed.
    #[error("cannot register the webhook: {0}")]
    Register(#[from] kube::Error),
}

/// Whether a ModelVersion referenced by an InferenceEndpoint exists (read at the edge, passed in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// Not an InferenceEndpoint, or nothing to look up.
    NotApplicable,
    /// The referenced ModelVersion exists.
    Exists,
    /// It does not.
    Missing,
}

/// Everything wrong with `object` of `kind` (empty: admit); `host_paths` are the node directories a
/// ModelVersion's `file://` artifact may use. Pure.
pub fn validate(
    kind: &str,
    object: &Value,
    old: Option<&Value>,
    reference: Reference,
    host_paths: &HostPathPolicy,
) -> Vec<String> {
    let Some((_, crd)) = anshin_crds::all_crds()
        .into_iter()
        .find(|(_, c)| c.spec.names.kind == kind)
    else {
        return Vec::new();
    };
    let Some(schema) = anshin_crds::schema_check::schema_of(&crd) else {
        return Vec::new();
    };
    let mut problems: Vec<String> = anshin_crds::schema_check::check_cel(&schema, object, old)
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    if kind == "ModelVersion" {
        problems.extend(artifact_problem(object, old, host_paths));
    }
    if reference == Reference::Missing {
        let name = object["spec"]["modelVersion"].as_str().unwrap_or_default();
        problems.push(format!(
            "spec.modelVersion: ModelVersion {name:?} does not exist in this namespace: create it first or fix the name"
        ));
    }
    problems
}

/// Why the operator could not mount a ModelVersion's artifact. Checked when the URI is new (on create;
/// the spec is immutable), so a later change of the allowed prefixes does not block edits of metadata.
fn artifact_problem(
    object: &Value,
    old: Option<&Value>,
    host_paths: &HostPathPolicy,
) -> Option<String> {
    let uri = object["spec"]["artifact"]["uri"].as_str()?;
    if old.is_some_and(|o| o["spec"]["artifact"]["uri"].as_str() == Some(uri)) {
        return None;
    }
    let admitted = artifact::parse_source(uri).and_then(|s| artifact::admit(s, host_paths));
    match admitted {
        // Accepted by the schema, reported by the controller until Anshin reads it.
        Ok(_) | Err(artifact::SourceError::Unsupported { .. }) => None,
        Err(e) => Some(format!("spec.artifact.uri: {e}")),
    }
}

/// The ValidatingWebhookConfiguration for every Anshin kind, calling `url` and trusting `ca_pem`.
pub fn configuration(url: &str, ca_pem: &str) -> ValidatingWebhookConfiguration {
    let rule = RuleWithOperations {
        api_groups: Some(vec![anshin_crds::GROUP.into()]),
        api_versions: Some(vec![anshin_crds::VERSION.into()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        resources: Some(vec![
            "modelversions".into(),
            "trainingjobs".into(),
            "inferenceendpoints".into(),
            "globalendpoints".into(),
            "tenants".into(),
        ]),
        scope: Some("Namespaced".into()),
    };
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIGURATION_NAME.into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: "validate.anshin.dev".into(),
            admission_review_versions: vec!["v1".into()],
            client_config: WebhookClientConfig {
                url: Some(url.into()),
                ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
                ..WebhookClientConfig::default()
            },
            rules: Some(vec![rule]),
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            timeout_seconds: Some(5),
            ..ValidatingWebhook::default()
        }]),
    }
}

/// Registers (server-side applies) the configuration.
pub async fn register(
    client: &Client,
    config: &ValidatingWebhookConfiguration,
) -> Result<(), WebhookError> {
    let api = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    api.patch(
        CONFIGURATION_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(config),
    )
    .await?;
    Ok(())
}

/// Where and how the webhook serves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address to listen on.
    pub listen: std::net::SocketAddr,
    /// URL the API server calls, registered in the configuration (e.g. `https://127.0.0.1:9443/validate`).
    pub url: String,
    /// Directory with `tls.crt`, `tls.key` and `ca.crt` (e.g. a mounted cert-manager Secret); without it a
    /// self-signed CA is made at start-up (one replica only: each replica would register its own CA).
    pub cert_dir: Option<std::path::PathBuf>,
    /// Node directories a ModelVersion's `file://` artifact may use (the operator's `--allow-host-path`).
    pub host_paths: HostPathPolicy,
}

/// Loads or makes the certificates, starts serving and registers the configuration.
pub async fn start(client: Client, settings: &Settings) -> anyhow::Result<()> {
    let certs = match &settings.cert_dir {
        Some(dir) => {
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .map_err(|e| anyhow::anyhow!("{}/{f}: {e}", dir.display()))
            };
            tls::Certs {
                ca_pem: read("ca.crt")?,
                cert_pem: read("tls.crt")?,
                key_pem: read("tls.key")?,
            }
        }
        None => {
            let host = settings
                .url
                .split("://")
                .nth(1)
                .and_then(|r| r.split(['/', ':']).next())
                .unwrap_or("127.0.0.1");
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            tls::self_signed(&[host])?
        }
    };
    let tcp = tokio::net::TcpListener::bind(settings.listen).await?;
    let listener =
        tls::TlsListener::new(tcp, tls::server_config(&certs.cert_pem, &certs.key_pem)?)?;
    tracing::info!(addr = %settings.listen, url = %settings.url, "serving the validating webhook");
    let app = router(client.clone(), settings.host_paths.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "webhook server failed");
        }
    });
    register(&client, &configuration(&settings.url, &certs.ca_pem)).await?;
    Ok(())
}

/// The `/validate` route.
pub fn router(client: Client, host_paths: HostPathPolicy) -> Router {
    Router::new()
        .route("/validate", post(review))
        .with_state(Arc::new((client, host_paths)))
}

async fn review(
    State(state): State<Arc<(Client, HostPathPolicy)>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return Json(
                AdmissionResponse::invalid(format!("malformed AdmissionReview: {e}")).into_review(),
            );
        }
    };
    let response = AdmissionResponse::from(&request);
    let (Some(object), kind) = (request.object.as_ref(), request.kind.kind.as_str()) else {
        return Json(response.into_review());
    };
    let value = serde_json::to_value(object).unwrap_or(Value::Null);
    let old = request
        .old_object
        .as_ref()
        .and_then(|o| serde_json::to_value(o).ok());
    let (client, host_paths) = state.as_ref();
    let reference = lookup(client, kind, &value, request.namespace.as_deref()).await;
    let problems = validate(kind, &value, old.as_ref(), reference, host_paths);
    let response = if problems.is_empty() {
        response
    } else {
        response.deny(problems.join("; "))
    };
    Json(response.into_review())
}

async fn lookup(client: &Client, kind: &str, object: &Value, namespace: Option<&str>) -> Reference {
    let (Some(name), Some(ns)) = (object["spec"]["modelVersion"].as_str(), namespace) else {
        return Reference::NotApplicable;
    };
    if kind != "InferenceEndpoint" {
        return Reference::NotApplicable;
    }
    match Api::<anshin_crds::ModelVersion>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
    {
        Ok(Some(_)) => Reference::Exists,
        Ok(None) => Reference::Missing,
        // Cannot tell: let the controller report it rather than block every write on an API hiccup.
        Err(e) => {
            tracing::warn!(error = %e, "webhook cannot look up the ModelVersion");
            Reference::NotApplicable
        }
    }
}
