#!/usr/bin/env bash
# The main job. For now: install what is needed, build the CRDs, check the committed YAML is current and
# print what a platform team would apply. It grows into "bring up the local cluster, deploy Anshin and
# send a guarded chat request" as the operator issues land.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ANSHIN_ROOT"
bash scripts/setup.sh
echo "==> building the CRD generator"
cargo build --locked -q -p anshin-crds --bin crdgen
"$CARGO_TARGET_DIR/debug/crdgen" --check crds/yaml
echo "==> Anshin custom resources (apply with: kubectl apply -f crds/yaml/)"
printf '  %-38s %-18s %s\n' FILE KIND SHORT
for f in crds/yaml/*.yaml; do
  kind=$(awk '/^    kind:/{print $2; exit}' "$f")
  short=$(awk '/shortNames:/{getline; print $2; exit}' "$f")
  printf '  %-38s %-18s %s\n' "$f" "$kind" "$short"
done
echo "==> examples (one per kind): examples/*.yaml; fixtures the API rejects: examples/rejected/"
