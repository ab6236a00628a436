#!/usr/bin/env bash
# shellcheck disable=SC2329  # cmd_* functions are reached via lib.sh's dir_command_main
# hack/cluster.sh — a real, local Kubernetes control plane for tests:
# etcd + kube-apiserver (+ kube-controller-manager), all on 127.0.0.1,
# built from Go modules by hack/tools.sh. No Docker, no kubelet, no network.
#
#   hack/cluster.sh up <dir>       start (or reuse) the cluster; prints <dir>/kubeconfig
#   hack/cluster.sh down <dir>     stop it (pid files) and delete etcd data; idempotent
#   hack/cluster.sh status <dir>   exit 0 and print the kubeconfig path if it is up
#
# <dir> gets: kubeconfig (admin, group system:masters), cluster.env (ports,
# token, URL; `source`-able), pki/, *.pid, logs/*.log, etcd-data/.
#
# Environment (all optional):
#   EMBOP_ETCD_PORT, EMBOP_ETCD_PEER_PORT, EMBOP_APISERVER_PORT, EMBOP_KCM_PORT
#                           fixed ports (default: free ports picked at runtime)
#   EMBOP_SERVICE_CIDR      service ClusterIP range (default 127.77.0.0/16, loopback)
#   EMBOP_CLUSTER_KCM       1 (default): build if needed and start kube-controller-manager;
#                           auto: start it only if already built; 0: never
#   EMBOP_CLUSTER_SCHEDULER 1: also build if needed and start kube-scheduler (default 0)
#   EMBOP_CLUSTER_TIMEOUT   seconds to wait for each component to get ready (default 180)
#   EMBOP_TOOLS_CACHE and the version pins of hack/tools.sh apply too.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$HACK_DIR/tools.sh"

SERVICE_CIDR="${EMBOP_SERVICE_CIDR:-127.77.0.0/16}"
KCM_MODE="${EMBOP_CLUSTER_KCM:-1}"
TIMEOUT="${EMBOP_CLUSTER_TIMEOUT:-180}"
SCHEDULER_MODE="${EMBOP_CLUSTER_SCHEDULER:-0}"
COMPONENTS=(kube-scheduler kube-controller-manager kube-apiserver etcd)   # stop order

LOG_TAG=cluster
# shellcheck source=hack/lib.sh
source "$HACK_DIR/lib.sh"

# ---- PKI -----------------------------------------------------------------------------
first_service_ip() { # 127.77.0.0/16 -> 127.77.0.1 (IPv4 only)
  python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1], strict=False).hosts()))' "$1"
}

gen_pki() {
  local pki="$1" svc_ip="$2"
  mkdir -p "$pki"
  chmod 700 "$pki"
  [[ -f "$pki/ca.crt" && -f "$pki/apiserver.crt" && -f "$pki/front-proxy-client.crt" \
     && -f "$pki/sa.key" && -f "$pki/tokens.csv" ]] && return 0
  log "generating certificates in $pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=embop-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$pki/apiserver.key" \
    -out "$pki/apiserver.csr" -subj "/CN=kube-apiserver" 2>/dev/null
  cat > "$pki/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$pki/apiserver.ext" \
    -out "$pki/apiserver.crt" 2>/dev/null
  # front proxy (aggregation layer): CA + client cert, so kube-apiserver publishes a
  # requestheader CA in kube-system/extension-apiserver-authentication (delegated
  # authn in kube-controller-manager and aggregated API servers needs it).
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -keyout "$pki/front-proxy-ca.key" -out "$pki/front-proxy-ca.crt" -subj "/CN=embop-front-proxy-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$pki/front-proxy-client.key" \
    -out "$pki/front-proxy-client.csr" -subj "/CN=front-proxy-client" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    > "$pki/front-proxy-client.ext"
  openssl x509 -req -in "$pki/front-proxy-client.csr" -CA "$pki/front-proxy-ca.crt" \
    -CAkey "$pki/front-proxy-ca.key" -CAcreateserial -days 3650 -sha256 \
    -extfile "$pki/front-proxy-client.ext" -out "$pki/front-proxy-client.crt" 2>/dev/null
  # service-account token signing key pair
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # static token file: token,user,uid,"groups"
  printf '%s,embop-admin,embop-admin,"system:masters"\n' "$(openssl rand -hex 32)" > "$pki/tokens.csv"
  chmod 600 "$pki"/*.key "$pki/tokens.csv"
}

write_kubeconfig() { # write_kubeconfig <file> <server> <ca> <token>
  local ca_data
  ca_data="$(base64 -w0 < "$3")"
  umask 077
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: embop-local
  cluster:
    server: $2
    certificate-authority-data: $ca_data
users:
- name: embop-admin
  user:
    token: $4
contexts:
- name: embop-local
  context:
    cluster: embop-local
    user: embop-admin
    namespace: default
current-context: embop-local
EOF
}

# ---- readiness probes ----------------------------------------------------------------
probe_etcd() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }
probe_apiserver() { # <dir> <port> <token>
  [[ "$(curl -sS --max-time 3 --cacert "$1/pki/ca.crt" -H "Authorization: Bearer $3" \
        "https://127.0.0.1:$2/readyz")" == ok ]]
}
probe_healthz() { [[ "$(curl -ksS --max-time 3 "https://127.0.0.1:$1/healthz")" == ok ]]; }
probe_default_sa() { # the serviceaccount controller made "default" in "default"
  curl -fsS --max-time 3 --cacert "$1/pki/ca.crt" -H "Authorization: Bearer $3" \
    "https://127.0.0.1:$2/api/v1/namespaces/default/serviceaccounts/default" >/dev/null
}

# ---- commands -------------------------------------------------------------------------
cluster_running() { # all expected components alive and apiserver ready
  local dir="$1" c
  [[ -f "$dir/cluster.env" && -f "$dir/kubeconfig" ]] || return 1
  # shellcheck disable=SC1091
  ( source "$dir/cluster.env"
    for c in etcd kube-apiserver; do pid_of "$dir" "$c" >/dev/null || exit 1; done
    if [[ "${EMBOP_KCM_ENABLED:-0}" == 1 ]]; then pid_of "$dir" kube-controller-manager >/dev/null || exit 1; fi
    if [[ "${EMBOP_SCHEDULER_ENABLED:-0}" == 1 ]]; then pid_of "$dir" kube-scheduler >/dev/null || exit 1; fi
    probe_apiserver "$dir" "$EMBOP_APISERVER_PORT" "$EMBOP_ADMIN_TOKEN" )
}

cmd_down() {
  local dir="$1" c
  [[ -d "$dir" ]] || { log "$dir does not exist; nothing to do"; return 0; }
  for c in "${COMPONENTS[@]}"; do stop_component "$dir" "$c"; done
  rm -rf "$dir/etcd-data" "$dir/cluster.env" "$dir/kubeconfig"
  log "down: $dir"
}

cmd_status() {
  local dir="$1"
  if cluster_running "$dir"; then echo "$dir/kubeconfig"; else log "not running: $dir"; return 1; fi
}

cmd_up() {
  local dir="$1" use_kcm=0 use_scheduler=0 scheduler_bin="" etcd_bin apiserver_bin kcm_bin="" paths
  need openssl; need curl; need python3; need setsid
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if cluster_running "$dir"; then
    log "already up: $dir"
    echo "$dir/kubeconfig"
    return 0
  fi
  # half-started / crashed leftovers: clean them first
  cmd_down "$dir" >/dev/null 2>&1 || true
  # a failed start must leave no processes behind (logs are kept)
  # shellcheck disable=SC2064
  trap "log 'start failed; stopping what was started'; cmd_down '$dir' || true" EXIT

  case "$KCM_MODE" in
    1|true|yes) use_kcm=1 ;;
    auto) "$TOOLS" path kube-controller-manager >/dev/null 2>&1 && use_kcm=1 ;;
    0|false|no) use_kcm=0 ;;
    *) die "EMBOP_CLUSTER_KCM must be 1, auto or 0" ;;
  esac
  if ((use_kcm)); then
    paths="$("$TOOLS" ensure etcd kube-apiserver kube-controller-manager)"
    kcm_bin="$(sed -n 3p <<<"$paths")"
  else
    paths="$("$TOOLS" ensure etcd kube-apiserver)"
  fi
  case "$SCHEDULER_MODE" in
    1|true|yes) use_scheduler=1; scheduler_bin="$("$TOOLS" ensure kube-scheduler)" ;;
    0|false|no) ;;
    *) die "EMBOP_CLUSTER_SCHEDULER must be 1 or 0" ;;
  esac
  etcd_bin="$(sed -n 1p <<<"$paths")"
  apiserver_bin="$(sed -n 2p <<<"$paths")"

  local etcd_port="${EMBOP_ETCD_PORT:-$(free_port)}"
  local etcd_peer_port="${EMBOP_ETCD_PEER_PORT:-$(free_port)}"
  local api_port="${EMBOP_APISERVER_PORT:-$(free_port)}"
  local kcm_port="${EMBOP_KCM_PORT:-$(free_port)}"
  local scheduler_port="${EMBOP_SCHEDULER_PORT:-$(free_port)}"
  local svc_ip token pki="$dir/pki"
  svc_ip="$(first_service_ip "$SERVICE_CIDR")"
  gen_pki "$pki" "$svc_ip"
  token="$(cut -d, -f1 "$pki/tokens.csv")"
  mkdir -p "$dir/logs"

  # -- etcd ------------------------------------------------------------------------
  rm -rf "$dir/etcd-data"
  start_component "$dir" etcd "$etcd_bin" \
    --name=embop --data-dir="$dir/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="embop=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true --log-level=warn
  wait_for "$dir" etcd "etcd health on 127.0.0.1:$etcd_port" probe_etcd "$etcd_port"

  # -- kube-apiserver -----------------------------------------------------------------
  start_component "$dir" kube-apiserver "$apiserver_bin" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --cert-dir="$pki/apiserver-generated" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --token-auth-file="$pki/tokens.csv" \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false \
    --v=1
  wait_for "$dir" kube-apiserver "kube-apiserver /readyz on 127.0.0.1:$api_port" \
    probe_apiserver "$dir" "$api_port" "$token"

  write_kubeconfig "$dir/kubeconfig" "https://127.0.0.1:$api_port" "$pki/ca.crt" "$token"
  umask 077
  cat > "$dir/cluster.env" <<EOF
KUBECONFIG=$dir/kubeconfig
EMBOP_APISERVER_URL=https://127.0.0.1:$api_port
EMBOP_APISERVER_PORT=$api_port
EMBOP_ETCD_PORT=$etcd_port
EMBOP_ETCD_PEER_PORT=$etcd_peer_port
EMBOP_KCM_PORT=$kcm_port
EMBOP_KCM_ENABLED=$use_kcm
EMBOP_SCHEDULER_PORT=$scheduler_port
EMBOP_SCHEDULER_ENABLED=$use_scheduler
EMBOP_SERVICE_CIDR=$SERVICE_CIDR
EMBOP_CA_FILE=$pki/ca.crt
EMBOP_ADMIN_TOKEN=$token
EOF

  # -- kube-controller-manager (garbage collector, namespace deletion, SA tokens...) --
  # 1.36's kube-controller-manager has no cloud controllers left (service-lb, route,
  # cloud-node-lifecycle live in cloud-controller-manager), so only node-ipam is
  # turned off (no pod CIDRs to hand out). --flex-volume-plugin-dir keeps it from
  # creating /usr/libexec/kubernetes/... on the host.
  if ((use_kcm)); then
    start_component "$dir" kube-controller-manager "$kcm_bin" \
      --kubeconfig="$dir/kubeconfig" \
      --authentication-kubeconfig="$dir/kubeconfig" \
      --authorization-kubeconfig="$dir/kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$kcm_port" \
      --cert-dir="$pki/kcm-generated" \
      --leader-elect=false \
      --controllers='*,-node-ipam-controller' \
      --flex-volume-plugin-dir="$dir/flexvolume" \
      --allocate-node-cidrs=false \
      --service-cluster-ip-range="$SERVICE_CIDR" \
      --service-account-private-key-file="$pki/sa.key" \
      --root-ca-file="$pki/ca.crt" \
      --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
      --use-service-account-credentials=false \
      --profiling=false \
      --v=1
    wait_for "$dir" kube-controller-manager "kube-controller-manager /healthz on 127.0.0.1:$kcm_port" \
      probe_healthz "$kcm_port"
    wait_for "$dir" kube-controller-manager "default ServiceAccount" \
      probe_default_sa "$dir" "$api_port" "$token"
  fi

  # -- kube-scheduler (binds pods to nodes, e.g. kwok's fake GPU nodes) -----------------
  if ((use_scheduler)); then
    start_component "$dir" kube-scheduler "$scheduler_bin" \
      --kubeconfig="$dir/kubeconfig" \
      --authentication-kubeconfig="$dir/kubeconfig" \
      --authorization-kubeconfig="$dir/kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$scheduler_port" \
      --cert-dir="$pki/scheduler-generated" \
      --leader-elect=false \
      --profiling=false \
      --v=2
    wait_for "$dir" kube-scheduler "kube-scheduler /healthz on 127.0.0.1:$scheduler_port" \
      probe_healthz "$scheduler_port"
  fi

  trap - EXIT
  log "up: KUBECONFIG=$dir/kubeconfig (server https://127.0.0.1:$api_port)"
  echo "$dir/kubeconfig"
}

dir_command_main 22 "$@"; exit $?   # exit here: safe if this file is edited while running
