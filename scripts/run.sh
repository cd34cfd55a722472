#!/usr/bin/env bash
# The main job: a guarded Japanese medical endpoint on the local Kubernetes cluster, end to end.
#   bash scripts/run.sh        set up, start (or reuse) everything, send one chat request, print the answer
#   bash scripts/run.sh down   stop the gateway, the operator and the local cluster (only what this started)
# What it does: installs what is missing (scripts/setup.sh), builds the binaries, starts the local cluster
# (real kube-apiserver 1.20 + node agent), the operator (installs the CRDs, admission webhook) and the
# gateway (routing from the Kubernetes API), applies a Tenant, a ModelVersion for the best model available
# offline and an InferenceEndpoint, waits until the endpoint is Ready, then asks a Japanese clinical question
# that names a patient through the gateway with the tenant's key.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ANSHIN_ROOT"
DEMO="$ANSHIN_CACHE/demo"; mkdir -p "$DEMO"
B="$CARGO_TARGET_DIR/debug"
NS=anshin-demo
GATEWAY_PORT=${ANSHIN_DEMO_GATEWAY_PORT:-18080}
say() { printf '\n==> %s\n' "$*"; }

stop_pidfile() {  # stop a process this script started, by the PID it recorded
  local f="$DEMO/$1.pid"
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null && grep -q "anshin-$1" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid"; for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [ "${1:-}" = down ]; then
  stop_pidfile gateway; stop_pidfile operator
  [ -x "$B/anshin-local" ] && "$B/anshin-local" down || true
  echo "stopped"; exit 0
fi

say "installing prerequisites (idempotent; the first run builds Kubernetes and takes several minutes)"
bash scripts/setup.sh
say "building the binaries (debug profile; numeric crates optimised)"
cargo build --locked -q -p anshin-e2e -p anshin-operator -p anshin-gateway -p anshin-inference

say "local Kubernetes cluster"
if "$B/anshin-local" status >/dev/null 2>&1; then echo "reusing the running local cluster"; else "$B/anshin-local" up; fi
KC=$("$B/anshin-local" kubeconfig)
k() { kubectl --kubeconfig "$KC" "$@"; }
k get nodes -o wide
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null

say "choosing the model"
GEMMA="$ANSHIN_CACHE/models/gemma-3-270m"
if [ -s "$GEMMA/gemma-3-270m-q4_k_m.gguf" ] && [ -s "$GEMMA/tokenizer.json" ]; then
  SRC="$GEMMA"; MODEL=gemma-3-270m; echo "Gemma-3-270M (Japanese-capable) from $SRC"
else
  SRC="$ANSHIN_CACHE/models/smollm2-135m-instruct"; MODEL=smollm2-135m
  echo "Gemma-3-270M is not installed (scripts/setup.sh could not fetch it): falling back to SmolLM2-135M, which answers in English"
fi
files=$(cd "$SRC" && for f in *; do [ -f "$f" ] || continue
  printf '      - path: %s\n        sha256: sha256:%s\n        size: %s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")"; done)
MV="demo-$MODEL-$(printf '%s' "$files" | sha256sum | cut -c1-8)"
cat > "$DEMO/modelversion.yaml" <<YAML
apiVersion: anshin.dev/v1alpha1
kind: ModelVersion
metadata:
  name: $MV
  namespace: $NS
spec:
  model: $MODEL
  version: demo
  artifact:
    uri: file://$SRC
    format: GGUF
    files:
$files
  lineage:
    method: Scratch
YAML

say "starting the operator and the gateway (logs in $DEMO)"
stop_pidfile operator; stop_pidfile gateway
KUBECONFIG="$KC" setsid "$B/anshin-operator" --install-crds --identity demo --lease-namespace "$NS" \
  --allow-host-path "$ANSHIN_CACHE/models" \
  --listen 127.0.0.1:18081 --webhook-listen 127.0.0.1:18443 >"$DEMO/operator.log" 2>&1 < /dev/null &
echo $! > "$DEMO/operator.pid"
KUBECONFIG="$KC" setsid "$B/anshin-gateway" serve --kube --kube-namespace "$NS" --listen "127.0.0.1:$GATEWAY_PORT" \
  --audit-log "$DEMO/audit.jsonl" >"$DEMO/gateway.log" 2>&1 < /dev/null &
echo $! > "$DEMO/gateway.pid"
for _ in $(seq 120); do k get crd tenants.anshin.dev >/dev/null 2>&1 && break; sleep 1; done
k wait --for=condition=established --timeout=60s crd/tenants.anshin.dev crd/modelversions.anshin.dev crd/inferenceendpoints.anshin.dev >/dev/null

say "applying the tenant, the model version and the endpoint"
k apply -f examples/tenant.yaml -f "$DEMO/modelversion.yaml"
sed "s/MODEL_VERSION/$MV/" examples/demo/inferenceendpoint.yaml | k apply -f -

say "waiting for the model version to be verified and the endpoint to be Ready"
start=$SECONDS
while :; do
  mv_phase=$(k -n "$NS" get mv "$MV" -o jsonpath='{.status.phase}' 2>/dev/null || true)
  ie_phase=$(k -n "$NS" get ie med-ja-chat -o jsonpath='{.status.phase}' 2>/dev/null || true)
  printf '  %3ss  ModelVersion %s: %s   InferenceEndpoint med-ja-chat: %s\n' $((SECONDS - start)) "$MV" "${mv_phase:-?}" "${ie_phase:-?}"
  [ "$mv_phase" = Rejected ] && { k -n "$NS" describe mv "$MV"; exit 1; }
  [ "$ie_phase" = Ready ] && break
  [ $((SECONDS - start)) -gt 900 ] && { echo "timed out; see $DEMO/*.log and 'anshin-local status'" >&2; exit 1; }
  sleep 5
done
k -n "$NS" get anshin

KEY_CMD="kubectl --kubeconfig $KC -n $NS get secret toto-university-hospital-key-ehr-prod -o jsonpath='{.data.api-key}' | base64 -d"
KEY=$(eval "$KEY_CMD")
QUESTION='患者の山田太郎さん（72歳、東京都新宿区西新宿2-8-1在住）は高血圧で通院中です。日常生活で気をつけることを簡潔に教えてください。'
BODY=$(python3 -c 'import json,sys; print(json.dumps({"model":"med-ja-chat","messages":[{"role":"user","content":sys.argv[1]}],"max_tokens":96}, ensure_ascii=False))' "$QUESTION")
say "asking through the gateway (the patient's name and address are masked before the model sees them)"
echo "Q: $QUESTION"
for _ in $(seq 30); do
  curl -sS -o "$DEMO/answer.json" -D "$DEMO/answer.headers" -w '%{http_code}' "http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions" \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$BODY" > "$DEMO/answer.code" || true
  [ "$(cat "$DEMO/answer.code")" = 200 ] && break; sleep 2
done
[ "$(cat "$DEMO/answer.code")" = 200 ] || { echo "gateway answered HTTP $(cat "$DEMO/answer.code"):"; cat "$DEMO/answer.json"; exit 1; }
python3 -c 'import json,sys; print("A:", json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$DEMO/answer.json"
grep -i '^x-anshin-model' "$DEMO/answer.headers" || true
echo "audit record (no text, only counts): $(tail -n1 "$DEMO/audit.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print({k: r.get(k) for k in ("tenant","model_version","input_entities","output_leaks","status")})')"

say "try it yourself"
cat <<TXT
KEY=\$($KEY_CMD)
curl -sS http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' \\
  -d '{"model":"med-ja-chat","messages":[{"role":"user","content":"糖尿病の患者さんへの食事指導のポイントは？"}],"max_tokens":96}'
kubectl --kubeconfig $KC -n $NS get anshin      # every Anshin object
bash scripts/run.sh down                         # stop everything this started
TXT
