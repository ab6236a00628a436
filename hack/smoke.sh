#!/usr/bin/env bash
# hack/smoke.sh [dir] — end-to-end check of hack/tools.sh + hack/cluster.sh:
# up, kubectl get ns / version, namespace, a CRD with a status subresource and
# an object of it (status written through /status), garbage collection of an
# owned object, KubeRay's CRDs, then down (also on failure).
# Default dir: /tmp/embop-cluster. Set EMBOP_SMOKE_KUBERAY=0 to skip KubeRay CRDs.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${1:-/tmp/embop-cluster}"

log() { printf '[smoke] %s\n' "$*" >&2; }
fail() { printf '[smoke] FAIL: %s\n' "$*" >&2; exit 1; }

KUBECTL="$("$HACK_DIR/tools.sh" ensure kubectl)"
trap '"$HACK_DIR/cluster.sh" down "$DIR" >/dev/null 2>&1 || true' EXIT

KUBECONFIG_PATH="$("$HACK_DIR/cluster.sh" up "$DIR")"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# idempotent: a second `up` reuses the running cluster
[[ "$("$HACK_DIR/cluster.sh" up "$DIR")" == "$KUBECONFIG_PATH" ]] || fail "second up differs"

log "kubectl get ns"; k get ns
log "kubectl version"; k version
k version -o json | grep -q '"gitVersion": "v1\.' || fail "server version not set"
k get --raw /version | grep -q '"gitVersion": "v0.0.0' && fail "server reports v0.0.0"

log "namespace + service ClusterIP inside the loopback range"
k create namespace embop-smoke
k -n embop-smoke create service clusterip smoke --tcp=80:8080
ip="$(k -n embop-smoke get svc smoke -o jsonpath='{.spec.clusterIP}')"
[[ "$ip" == 127.* ]] || fail "service got ClusterIP $ip, expected 127.x"
log "service ClusterIP: $ip"

log "CRD with status subresource"
k apply -f - <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.embop.local
spec:
  group: smoke.embop.local
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties: {size: {type: integer}}
          status:
            type: object
            properties: {ready: {type: boolean}}
EOF
k wait --for=condition=Established --timeout=60s crd/widgets.smoke.embop.local
k -n embop-smoke apply -f - <<'EOF'
apiVersion: smoke.embop.local/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
EOF
k -n embop-smoke patch widget w1 --subresource=status --type=merge -p '{"status":{"ready":true}}'
[[ "$(k -n embop-smoke get widget w1 -o jsonpath='{.status.ready}')" == true ]] || fail "status not stored"
# a status write through the main resource must be ignored (subresource semantics)
k -n embop-smoke patch widget w1 --type=merge -p '{"status":{"ready":false},"spec":{"size":4}}'
[[ "$(k -n embop-smoke get widget w1 -o jsonpath='{.status.ready}/{.spec.size}')" == true/4 ]] \
  || fail "status subresource semantics broken"

# shellcheck disable=SC1091
source "$DIR/cluster.env"
if [[ "${EMBOP_KCM_ENABLED:-0}" == 1 ]]; then
  log "garbage collector: deleting the owner removes the owned ConfigMap"
  uid="$(k -n embop-smoke get widget w1 -o jsonpath='{.metadata.uid}')"
  k -n embop-smoke apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned
  ownerReferences:
  - {apiVersion: smoke.embop.local/v1, kind: Widget, name: w1, uid: "$uid"}
EOF
  k -n embop-smoke delete widget w1
  k -n embop-smoke wait --for=delete configmap/owned --timeout=90s
fi

if [[ "${EMBOP_SMOKE_KUBERAY:-1}" == 1 ]]; then
  crds="$("$HACK_DIR/tools.sh" kuberay-crds)"
  log "KubeRay CRDs from $crds"
  k create -f "$crds"
  k wait --for=condition=Established --timeout=60s \
    crd/rayclusters.ray.io crd/rayjobs.ray.io crd/rayservices.ray.io
  k get rayclusters,rayjobs,rayservices -A
  k -n embop-smoke create -f - <<'EOF'
apiVersion: ray.io/v1
kind: RayCluster
metadata: {name: smoke}
spec:
  headGroupSpec:
    rayStartParams: {}
    template:
      spec:
        containers:
        - {name: ray-head, image: rayproject/ray:2.9.0}
EOF
  k -n embop-smoke get raycluster smoke
fi

"$HACK_DIR/cluster.sh" down "$DIR"
"$HACK_DIR/cluster.sh" down "$DIR"   # idempotent
for c in etcd kube-apiserver kube-controller-manager; do
  [[ ! -f "$DIR/$c.pid" ]] || fail "$c.pid left behind"
done
[[ ! -d "$DIR/etcd-data" ]] || fail "etcd data left behind"
trap - EXIT
log "PASS"
