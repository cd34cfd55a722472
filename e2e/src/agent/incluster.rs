//! What a process needs to reach the API server as its pod's ServiceAccount.
//!
//! A pod's token volume is mounted (by the ServiceAccount admission plugin) at
//! `/var/run/secrets/kubernetes.io/serviceaccount`, a path the process cannot see. When a container has
//! that mount, the agent writes a kubeconfig next to the volume (server `https://127.0.0.1:<port>`, the
//! volume's `ca.crt`, `tokenFile` = the volume's `token`, namespace = the pod's) and sets `KUBECONFIG` to
//! it, so `kube::Client::try_default()` (kubeconfig first) authenticates as the ServiceAccount and RBAC
//! applies as in a real cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::volumes;

/// Where Kubernetes mounts a pod's ServiceAccount token.
pub const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Rewrites mount paths in env values and adds `ANSHIN_MOUNTS`, `ANSHIN_POD_DIR` and (when the token
/// volume is mounted and the container sets none) `KUBECONFIG`.
pub fn finish_env(
    env: &mut BTreeMap<String, String>,
    mounts: &[(String, PathBuf)],
    pod_dir: &Path,
    apiserver_port: u16,
    namespace: &str,
) {
    env.values_mut()
        .for_each(|v| *v = volumes::rewrite(v, mounts));
    env.insert("ANSHIN_MOUNTS".into(), volumes::mounts_env(mounts));
    env.insert(
        "ANSHIN_POD_DIR".into(),
        pod_dir.to_string_lossy().into_owned(),
    );
    if env.contains_key("KUBECONFIG") {
        return;
    }
    let Some((_, token_dir)) = mounts.iter().find(|(m, _)| m == TOKEN_MOUNT) else {
        return;
    };
    let path = pod_dir.join("serviceaccount.kubeconfig");
    if std::fs::write(&path, kubeconfig(token_dir, apiserver_port, namespace)).is_ok() {
        env.insert("KUBECONFIG".into(), path.to_string_lossy().into_owned());
    }
}

fn kubeconfig(token_dir: &Path, port: u16, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{port}\n    \
         certificate-authority: {ca}\nusers:\n- name: serviceaccount\n  user:\n    tokenFile: {token}\ncontexts:\n\
         - name: local\n  context:\n    cluster: local\n    user: serviceaccount\n    namespace: {namespace}\n\
         current-context: local\n",
        ca = token_dir.join("ca.crt").display(),
        token = token_dir.join("token").display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_mount_yields_a_kubeconfig_for_the_pods_namespace() {
        let dir = std::env::temp_dir().join(format!("anshin-incluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounts = vec![
            (TOKEN_MOUNT.to_string(), dir.join("sa")),
            ("/data".to_string(), dir.join("data")),
        ];
        let mut env = BTreeMap::from([("OUT".to_string(), "/data/out".to_string())]);
        finish_env(&mut env, &mounts, &dir, 6443, "team-a");
        assert_eq!(env["OUT"], format!("{}/out", dir.join("data").display()));
        let text = std::fs::read_to_string(&env["KUBECONFIG"]).unwrap();
        assert!(
            text.contains("server: https://127.0.0.1:6443") && text.contains("namespace: team-a"),
            "{text}"
        );
        assert!(
            text.contains(&format!("tokenFile: {}", dir.join("sa/token").display())),
            "{text}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
