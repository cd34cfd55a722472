//! The shared test cluster with the operator running in this test process: CRDs installed, the
//! admission webhook serving, every controller of `runtime::run_controllers` on its own thread.

use std::sync::OnceLock;
use std::time::Duration;

use anshin_e2e::fixture::{TestCluster, shared};
use anshin_operator::metrics::Metrics;
use anshin_operator::policy::{DEFAULT_VERIFIER_IMAGE, HostPathPolicy};
use anshin_operator::reconcile::context::{Context, Settings};
use anshin_operator::runtime::{self, startup};
use anshin_operator::webhook;
use futures::FutureExt;

use super::free_port;

static OPERATOR: OnceLock<()> = OnceLock::new();

/// The shared cluster of this test binary, with the operator started once.
pub fn cluster() -> &'static TestCluster {
    let cluster = shared();
    OPERATOR.get_or_init(|| start(cluster));
    cluster
}

fn start(cluster: &'static TestCluster) {
    let kubeconfig = cluster.kubeconfig().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build();
        let Ok(rt) = rt else {
            return drop(tx.send(Err("no runtime".to_owned())));
        };
        rt.block_on(async move {
            let client = match anshin_e2e::kubeconfig::client(&kubeconfig).await {
                Ok(c) => c,
                Err(e) => return drop(tx.send(Err(e.to_string()))),
            };
            if let Err(e) = startup::install_crds(&client).await {
                return drop(tx.send(Err(format!("installing CRDs: {e}"))));
            }
            let _ = startup::wait_for_crds(&client).await;
            let port = free_port();
            // The tests' models are written to temporary directories.
            let host_paths = HostPathPolicy::new(&[std::env::temp_dir().to_string_lossy()])
                .expect("temp dir is absolute");
            let webhook = webhook::Settings {
                listen: ([127, 0, 0, 1], port).into(),
                url: format!("https://127.0.0.1:{port}/validate"),
                cert_dir: None,
                host_paths: host_paths.clone(),
            };
            if let Err(e) = webhook::start(client.clone(), &webhook).await {
                return drop(tx.send(Err(format!("starting the webhook: {e}"))));
            }
            let settings = Settings {
                verifier_image: DEFAULT_VERIFIER_IMAGE.into(),
                host_paths,
                network: anshin_operator::endpoint::backend_access::NetworkSettings {
                    gateway_namespace: "anshin-system".into(),
                    gateway_labels: [("app.kubernetes.io/name".into(), "anshin-gateway".into())]
                        .into(),
                    monitoring_namespace: None,
                },
            };
            let ctx = Context::new(
                client.clone(),
                Metrics::new(),
                settings,
                "operator-test".into(),
            );
            let _ = tx.send(Ok(()));
            runtime::run_controllers(client, ctx, futures::future::pending().boxed().shared())
                .await;
        });
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the operator could not start: {e}"),
        Err(_) => panic!("the operator did not start within 120 s"),
    }
}
