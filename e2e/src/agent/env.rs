//! A container's environment, resolved like the kubelet does: `env` (literal values with `$(VAR)`
//! expansion, `valueFrom` Secret / ConfigMap keys and `fieldRef`s such as POD_IP and POD_NAME) and
//! `envFrom`, on top of a small base environment (PATH, HOSTNAME, KUBERNETES_SERVICE_HOST/PORT).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};
use kube::api::Api;

/// Errors resolving the environment; the container waits with `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced Secret or ConfigMap (or a key in it) is missing and the reference is not optional.
    #[error("{kind} {name:?} (key {key:?}) not found")]
    Missing {
        /// Secret or ConfigMap.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The key ("" for envFrom).
        key: String,
    },
    /// A `fieldRef` path the agent does not know.
    #[error("unsupported fieldRef {0:?}")]
    UnsupportedField(String),
    /// Reading from the API failed.
    #[error("reading {kind} {name:?}: {source}")]
    Api {
        /// Secret or ConfigMap.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

/// What the environment depends on besides the pod spec.
#[derive(Debug, Clone)]
pub struct EnvContext {
    /// The pod's loopback address.
    pub pod_ip: String,
    /// The API server's port on 127.0.0.1 (for in-cluster clients).
    pub apiserver_port: u16,
}

/// The resolved environment of `container` in `pod`.
pub async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
) -> Result<BTreeMap<String, String>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut env = base_env(pod, ctx);
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = match (&from.secret_ref, &from.config_map_ref) {
            (Some(r), _) => secret_data(&secrets, &r.name, r.optional.unwrap_or(false)).await?,
            (_, Some(r)) => {
                config_map_data(&config_maps, &r.name, r.optional.unwrap_or(false)).await?
            }
            _ => BTreeMap::new(),
        };
        env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => value_from(&secrets, &config_maps, pod, ctx, source).await?,
            None => Some(expand(var.value.as_deref().unwrap_or(""), &env)),
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

fn base_env(pod: &Pod, ctx: &EnvContext) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    env.insert(
        "HOSTNAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    env.insert("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into());
    env.insert(
        "KUBERNETES_SERVICE_PORT".into(),
        ctx.apiserver_port.to_string(),
    );
    env
}

/// Expands `$(NAME)` references to already-defined variables; `$$` escapes, unknown references stay.
pub fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn value_from(
    secrets: &Api<Secret>,
    config_maps: &Api<ConfigMap>,
    pod: &Pod,
    ctx: &EnvContext,
    source: &EnvVarSource,
) -> Result<Option<String>, EnvError> {
    if let Some(r) = &source.secret_key_ref {
        let data = secret_data(secrets, &r.name, r.optional.unwrap_or(false)).await?;
        return key(data, "Secret", &r.name, &r.key, r.optional.unwrap_or(false));
    }
    if let Some(r) = &source.config_map_key_ref {
        let data = config_map_data(config_maps, &r.name, r.optional.unwrap_or(false)).await?;
        return key(
            data,
            "ConfigMap",
            &r.name,
            &r.key,
            r.optional.unwrap_or(false),
        );
    }
    if let Some(r) = &source.field_ref {
        return field(pod, ctx, &r.field_path).map(Some);
    }
    if let Some(r) = &source.resource_field_ref {
        return Err(EnvError::UnsupportedField(format!(
            "resourceFieldRef {}",
            r.resource
        )));
    }
    Ok(None)
}

fn key(
    data: BTreeMap<String, String>,
    kind: &'static str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, EnvError> {
    match data.get(key) {
        Some(v) => Ok(Some(v.clone())),
        None if optional => Ok(None),
        None => Err(EnvError::Missing {
            kind,
            name: name.into(),
            key: key.into(),
        }),
    }
}

/// The value of a downward-API `fieldRef` path.
pub fn field(pod: &Pod, ctx: &EnvContext, path: &str) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let k = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(k))
                .cloned()
                .unwrap_or_default(),
        )
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => Some("127.0.0.1".into()),
        "status.podIP" | "status.podIPs" => Some(ctx.pod_ip.clone()),
        _ => from_map(&meta.labels, "metadata.labels['")
            .or_else(|| from_map(&meta.annotations, "metadata.annotations['")),
    };
    value.ok_or_else(|| EnvError::UnsupportedField(path.to_string()))
}

/// All keys of a Secret, decoded (empty when missing and `optional`).
pub async fn secret_data(
    api: &Api<Secret>,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, EnvError> {
    let secret = get_opt(api, "Secret", name, optional).await?;
    let mut out = BTreeMap::new();
    if let Some(s) = secret {
        for (k, v) in s.data.unwrap_or_default() {
            out.insert(k, String::from_utf8_lossy(&v.0).into_owned());
        }
        out.extend(s.string_data.unwrap_or_default());
    }
    Ok(out)
}

/// All keys of a ConfigMap (empty when missing and `optional`).
pub async fn config_map_data(
    api: &Api<ConfigMap>,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, EnvError> {
    Ok(get_opt(api, "ConfigMap", name, optional)
        .await?
        .and_then(|c| c.data)
        .unwrap_or_default())
}

async fn get_opt<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    optional: bool,
) -> Result<Option<K>, EnvError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(obj)) => Ok(Some(obj)),
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(EnvError::Missing {
            kind,
            name: name.into(),
            key: String::new(),
        }),
        Err(source) => Err(EnvError::Api {
            kind,
            name: name.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_defined_references_and_escapes() {
        let env = BTreeMap::from([("POD_IP".to_string(), "127.1.0.2".to_string())]);
        assert_eq!(
            expand("http://$(POD_IP):80/$(NOPE)/$$(POD_IP)", &env),
            "http://127.1.0.2:80/$(NOPE)/$(POD_IP)"
        );
    }

    #[test]
    fn field_refs_cover_pod_identity_and_labels() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "labels": { "app": "x" } },
            "spec": { "nodeName": "cpu-0", "containers": [] }
        }))
        .unwrap();
        let ctx = EnvContext {
            pod_ip: "127.9.0.3".into(),
            apiserver_port: 6443,
        };
        assert_eq!(field(&pod, &ctx, "status.podIP").unwrap(), "127.9.0.3");
        assert_eq!(field(&pod, &ctx, "metadata.name").unwrap(), "p");
        assert_eq!(field(&pod, &ctx, "spec.nodeName").unwrap(), "cpu-0");
        assert_eq!(field(&pod, &ctx, "metadata.labels['app']").unwrap(), "x");
        assert!(field(&pod, &ctx, "status.phase").is_err());
    }
}
