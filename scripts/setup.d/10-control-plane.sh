#!/usr/bin/env bash
# Local cluster control plane (etcd + Kubernetes v1.20.2 built from Debian's source package); see docs/local-cluster.md.
set -euo pipefail
exec bash "$(dirname "$0")/../../e2e/scripts/install-control-plane.sh"
