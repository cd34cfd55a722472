//! Anshin's local Kubernetes cluster, for development, tests and the demo.
//!
//! - [`control_plane`]: the real control plane (etcd, kube-apiserver, kube-controller-manager,
//!   kube-scheduler v1.20.2, built by `e2e/scripts/install-control-plane.sh`) on loopback ports.
//! - [`agent`]: a node agent that plays the kubelet for Node objects — a process runner for tests.
//! - [`cluster`]: both together, as `anshin-local` and the test fixture start them.
//! - [`fixture`]: one cluster per test binary, one namespace per test, dumps on failure.
//!
//! See `docs/local-cluster.md` for what runs, how to use it by hand and its limits.

pub mod agent;
pub mod agent_cli;
pub mod binaries;
pub mod certs;
pub mod cluster;
mod components;
pub mod control_plane;
pub mod fixture;
pub mod http;
pub mod images;
pub mod kubeconfig;
pub mod local;
pub mod podnet;
pub mod process;
pub mod testpod;
