//! Pod volumes as local directories, and the path rewriting that lets programs find them.
//!
//! Without mount namespaces a process cannot see `/data` where the pod mounts a volume, so each volume
//! is a local directory and the agent rewrites every occurrence of a container's mount paths in its
//! command, args, env values, probe and hook commands to that directory (longest mount path first, only
//! at a path boundary). The mapping is also exported as `ANSHIN_MOUNTS=<mountPath>=<dir>:…`.
//!
//! - `emptyDir` → `<pod dir>/volumes/<name>` (removed with the pod)
//! - `hostPath` → the host path itself (created for `DirectoryOrCreate`/unset type)
//! - `persistentVolumeClaim` → `<agent dir>/pvc/<namespace>/<claim>` (survives pods, like a PVC)
//! - `configMap`, `secret` (incl. service-account tokens), `projected` secret/configMap sources →
//!   files written into `<pod dir>/volumes/<name>`
//! - anything else → an empty `<pod dir>/volumes/<name>`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};
use kube::api::Api;

use super::env::{EnvError, config_map_data, secret_data};

/// Errors preparing volumes.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A directory or file could not be created.
    #[error("volume {volume}: {path}: {source}")]
    Io {
        /// The volume name.
        volume: String,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A ConfigMap/Secret source is missing.
    #[error("volume {volume}: {source}")]
    Source {
        /// The volume name.
        volume: String,
        /// The cause.
        #[source]
        source: Box<EnvError>,
    },
}

/// Key → value data of a ConfigMap or Secret, and the items to project (all keys when `None`).
type DataSource<'a> = (BTreeMap<String, String>, Option<&'a Vec<KeyToPath>>);

/// Volume name → local directory, for one pod.
pub type VolumeDirs = BTreeMap<String, PathBuf>;

/// Creates (and fills) a local directory for every volume of `pod`.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    agent_dir: &Path,
) -> Result<VolumeDirs, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut dirs = VolumeDirs::new();
    for vol in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let dir = local_dir(vol, ns, pod_dir, agent_dir);
        mkdir(&vol.name, &dir)?;
        fill(client, ns, vol, &dir).await?;
        dirs.insert(vol.name.clone(), dir);
    }
    Ok(dirs)
}

fn local_dir(vol: &Volume, ns: &str, pod_dir: &Path, agent_dir: &Path) -> PathBuf {
    if let Some(h) = &vol.host_path {
        return PathBuf::from(&h.path);
    }
    if let Some(c) = &vol.persistent_volume_claim {
        return agent_dir.join("pvc").join(ns).join(&c.claim_name);
    }
    pod_dir.join("volumes").join(&vol.name)
}

async fn fill(
    client: &kube::Client,
    ns: &str,
    vol: &Volume,
    dir: &Path,
) -> Result<(), VolumeError> {
    let src = |source| VolumeError::Source {
        volume: vol.name.clone(),
        source: Box::new(source),
    };
    let mut sources: Vec<DataSource<'_>> = Vec::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    if let Some(s) = &vol.secret {
        let name = s.secret_name.as_deref().unwrap_or_default();
        sources.push((
            secret_data(&secrets, name, s.optional.unwrap_or(false))
                .await
                .map_err(src)?,
            s.items.as_ref(),
        ));
    }
    if let Some(c) = &vol.config_map {
        sources.push((
            config_map_data(&cms, &c.name, c.optional.unwrap_or(false))
                .await
                .map_err(src)?,
            c.items.as_ref(),
        ));
    }
    for p in vol
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
    {
        if let Some(s) = &p.secret {
            sources.push((
                secret_data(&secrets, &s.name, s.optional.unwrap_or(false))
                    .await
                    .map_err(src)?,
                s.items.as_ref(),
            ));
        }
        if let Some(c) = &p.config_map {
            sources.push((
                config_map_data(&cms, &c.name, c.optional.unwrap_or(false))
                    .await
                    .map_err(src)?,
                c.items.as_ref(),
            ));
        }
    }
    for (data, items) in sources {
        write_items(&vol.name, dir, &data, items)?;
    }
    Ok(())
}

fn write_items(
    volume: &str,
    dir: &Path,
    data: &BTreeMap<String, String>,
    items: Option<&Vec<KeyToPath>>,
) -> Result<(), VolumeError> {
    let files: Vec<(String, &String)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|v| (i.path.clone(), v)))
            .collect(),
        None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (rel, value) in files {
        let path = dir.join(rel.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            mkdir(volume, parent)?;
        }
        std::fs::write(&path, value).map_err(|source| VolumeError::Io {
            volume: volume.into(),
            path,
            source,
        })?;
    }
    Ok(())
}

fn mkdir(volume: &str, dir: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(|source| VolumeError::Io {
        volume: volume.into(),
        path: dir.into(),
        source,
    })
}

/// `(mountPath, local path)` of a container's mounts, longest mount path first.
pub fn mounts(container: &Container, dirs: &VolumeDirs) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let base = dirs.get(&m.name)?;
            let local = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => base.join(sub),
                None => base.clone(),
            };
            Some((m.mount_path.trim_end_matches('/').to_string(), local))
        })
        .collect();
    out.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    out
}

/// Rewrites mount paths in `text` to their local directories (at path boundaries only).
pub fn rewrite(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        let at_boundary = i == 0 || !is_path_char(text[..i].chars().next_back().unwrap_or(' '));
        if at_boundary {
            for (mount, local) in mounts {
                let rest = &text[i..];
                if mount.is_empty() || !rest.starts_with(mount.as_str()) {
                    continue;
                }
                let next = rest[mount.len()..].chars().next();
                if next.is_none_or(|c| c == '/' || !is_path_char(c)) {
                    out.push_str(&local.to_string_lossy());
                    i += mount.len();
                    continue 'scan;
                }
            }
        }
        let c = text[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')
}

/// A container's working directory: `workingDir` through the mounts, else `<pod dir>/rootfs/<workingDir>`.
pub fn work_dir(pod_dir: &Path, container: &Container, mounts: &[(String, PathBuf)]) -> PathBuf {
    let root = pod_dir.join("rootfs");
    match container.working_dir.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => {
            let mapped = PathBuf::from(rewrite(w, mounts));
            if mapped.as_os_str() != w {
                mapped
            } else {
                root.join(w.trim_start_matches('/'))
            }
        }
        None => root,
    }
}

/// The `ANSHIN_MOUNTS` value: `mountPath=localDir` pairs joined by `:`.
pub fn mounts_env(mounts: &[(String, PathBuf)]) -> String {
    mounts
        .iter()
        .map(|(m, l)| format!("{m}={}", l.display()))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_whole_mount_paths() {
        let mounts = vec![
            ("/data/cache".to_string(), PathBuf::from("/tmp/c")),
            ("/data".to_string(), PathBuf::from("/tmp/d")),
        ];
        assert_eq!(
            rewrite("echo x >> /data/log", &mounts),
            "echo x >> /tmp/d/log"
        );
        assert_eq!(rewrite("--dir=/data/cache", &mounts), "--dir=/tmp/c");
        assert_eq!(
            rewrite("/database /mydata /data", &mounts),
            "/database /mydata /tmp/d"
        );
    }
}
