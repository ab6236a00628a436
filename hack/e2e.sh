#!/usr/bin/env bash
# shellcheck disable=SC2329  # cmd_* functions are reached via lib.sh's dir_command_main
# hack/e2e.sh — the local end-to-end cluster, from real parts, all on loopback:
#   etcd + kube-apiserver + kube-controller-manager + kube-scheduler (hack/cluster.sh),
#   kwok managing fake nodes (hack/e2e/nodes.yaml: two advertise nvidia.com/gpu),
#   KubeRay's ray-operator out of cluster, a real Ray head (ray from the venv) on
#   127.0.0.1:8265 standing in for every head pod's dashboard, and
#   hack/e2e-headshim.py pointing KubeRay at it (head Service names -> 127.0.0.1 in a
#   hosts file that only KubeRay sees, through a private mount namespace; auth token).
#
#   hack/e2e.sh up <dir>       start (or reuse); prints <dir>/kubeconfig
#   hack/e2e.sh down <dir>     stop everything and delete the cluster's data; idempotent
#   hack/e2e.sh status <dir>   exit 0 and print the kubeconfig path if everything is up
#
# <dir> also gets e2e.env (source-able: KUBECONFIG, RAY_ADDRESS, EMBOP_RAY_TOKEN_FILE,
# EMBOP_E2E_POD_CIDR, ...), logs/{kwok,ray,headshim,ray-operator}.log.
# Nothing dials outside loopback: services get 127.77.0.0/16, pods 127.78.0.0/16, nodes
# 127.0.0.1; the Ray head (and every job it runs) gets HTTP(S)_PROXY and HF_ENDPOINT on
# a closed loopback port, so a stray download fails at once instead of leaving the machine;
# KubeRay and the Ray head resolve names with a resolv.conf naming only 127.0.0.1.
#
# Environment: EMBOP_PYTHON (default .venv/bin/python; needs ray[default] + kubernetes),
# EMBOP_E2E_RAY_CPUS (default: the cores, at least 4 logical CPUs, so that concurrent jobs
# never wait on each other), EMBOP_RAY_DASHBOARD_PORT (default 8265, the port KubeRay puts
# on head Services), plus everything hack/cluster.sh and tools.sh read.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HACK_DIR/.." && pwd)"
TOOLS="$HACK_DIR/tools.sh"
PYTHON="${EMBOP_PYTHON:-$ROOT/.venv/bin/python}"
POD_CIDR=127.78.0.0/16
DASHBOARD_PORT="${EMBOP_RAY_DASHBOARD_PORT:-8265}"
TIMEOUT="${EMBOP_CLUSTER_TIMEOUT:-180}"
COMPONENTS=(ray-operator headshim ray kwok)   # stop order (before the control plane)

LOG_TAG=e2e
# shellcheck source=hack/lib.sh
source "$HACK_DIR/lib.sh"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
probe_dashboard() { # <token>
  curl -fsS --max-time 3 --noproxy '*' -H "Authorization: Bearer $1" \
    "http://127.0.0.1:$DASHBOARD_PORT/api/version" >/dev/null
}
probe_nodes_ready() { # every kwok node Ready
  local out
  out="$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')"
  [[ -n "$out" ]] && ! grep -qv '^True$' <<<"$out"
}
kc() { "$KUBECTL_BIN" --kubeconfig="$KUBECONFIG" "$@"; }
probe_healthz_http() { curl -fsS --max-time 3 --noproxy '*' "http://127.0.0.1:$1/healthz" >/dev/null; }

e2e_running() {
  local dir="$1" c
  [[ -f "$dir/e2e.env" ]] || return 1
  "$HACK_DIR/cluster.sh" status "$dir" >/dev/null 2>&1 || return 1
  for c in "${COMPONENTS[@]}"; do pid_of "$dir" "$c" >/dev/null || return 1; done
}

cmd_status() {
  local dir="$1"
  if e2e_running "$dir"; then echo "$dir/kubeconfig"; else log "not running: $dir"; return 1; fi
}

cmd_down() {
  local dir="$1" c
  [[ -d "$dir" ]] || { log "$dir does not exist; nothing to do"; return 0; }
  for c in "${COMPONENTS[@]}"; do stop_component "$dir" "$c"; done
  # Ray drivers run in sessions of their own: stop whatever still uses this head's temp dir
  # (only a path of the exact shape e2e.sh made: an empty pattern would match everything).
  local raytmp=""
  [[ -f "$dir/ray-temp-dir" ]] && raytmp="$(cat "$dir/ray-temp-dir")"
  if [[ "$raytmp" =~ ^/tmp/embop-ray-[A-Za-z0-9]{6}$ ]]; then
    pkill -TERM -f -- "$raytmp" 2>/dev/null || true
    rm -rf "$raytmp"
  fi
  rm -f "$dir/ray-temp-dir"
  rm -f "$dir/e2e.env"
  "$HACK_DIR/cluster.sh" down "$dir"
}

cmd_up() {
  local dir="$1"
  need curl; need unshare; need mount
  [[ -x "$PYTHON" ]] || die "$PYTHON not found: run make install (or set EMBOP_PYTHON)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if e2e_running "$dir"; then log "already up: $dir"; echo "$dir/kubeconfig"; return 0; fi
  cmd_down "$dir" >/dev/null 2>&1 || true
  # shellcheck disable=SC2064
  trap "log 'start failed; stopping what was started'; cmd_down '$dir' || true" EXIT

  port_free "$DASHBOARD_PORT" || die "127.0.0.1:$DASHBOARD_PORT is taken: KubeRay sends every head's dashboard traffic there (set EMBOP_RAY_DASHBOARD_PORT only together with the head's dashboard port)"
  local paths kwok_bin kuberay_bin
  paths="$("$TOOLS" ensure kubectl kwok ray-operator)"
  KUBECTL_BIN="$(sed -n 1p <<<"$paths")"
  kwok_bin="$(sed -n 2p <<<"$paths")"
  kuberay_bin="$(sed -n 3p <<<"$paths")"
  EMBOP_CLUSTER_SCHEDULER=1 EMBOP_CLUSTER_KCM=1 "$HACK_DIR/cluster.sh" up "$dir" >/dev/null
  export KUBECONFIG="$dir/kubeconfig"

  # -- CRDs: ours and all of KubeRay's (its operator watches every kind it defines) ------
  local kuberay_crds
  kuberay_crds="$("$TOOLS" kuberay-crds)"
  kc apply --server-side -f "$ROOT/crds/" -f "$kuberay_crds/" >/dev/null
  kc wait --for=condition=Established --timeout=60s crd --all >/dev/null
  log "CRDs established"

  # -- kwok: fake nodes, pod lifecycle, pod IPs from a loopback range ---------------------
  kc apply -f "$HACK_DIR/e2e/nodes.yaml" >/dev/null
  local stages=() f stage_files
  stage_files="$("$TOOLS" kwok-stages)"
  while IFS= read -r f; do stages+=(-c "$f"); done <<<"$stage_files"
  start_component "$dir" kwok "$kwok_bin" --kubeconfig="$KUBECONFIG" \
    --manage-nodes-with-label-selector=type=kwok --cidr="$POD_CIDR" --node-ip=127.0.0.1 \
    --node-lease-duration-seconds=40 --server-address="127.0.0.1:$(free_port)" "${stages[@]}"
  wait_for "$dir" kwok "kwok nodes Ready" probe_nodes_ready

  # -- the real Ray head ----------------------------------------------------------------
  local token raytmp closed
  token="$(openssl rand -hex 32)"
  (umask 077; printf '%s\n' "$token" > "$dir/ray-token")
  raytmp="$(mktemp -d /tmp/embop-ray-XXXXXX)"   # short: Ray's socket paths are length-limited
  echo "$raytmp" > "$dir/ray-temp-dir"
  closed=1                                       # tcpmux: nothing listens on port 1
  # A resolv.conf naming only 127.0.0.1 (where no DNS server listens), for KubeRay and the Ray
  # head's jobs alone: a name that is not in their hosts file fails on loopback, never
  # reaching the machine's real resolver.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$dir/resolv.conf"
  start_component "$dir" ray unshare --mount --propagation private \
    sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$dir/resolv.conf" env \
    KUBECONFIG="$KUBECONFIG" RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$token" \
    HTTP_PROXY="http://127.0.0.1:$closed" HTTPS_PROXY="http://127.0.0.1:$closed" \
    http_proxy="http://127.0.0.1:$closed" https_proxy="http://127.0.0.1:$closed" \
    NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
    HF_ENDPOINT="http://127.0.0.1:$closed" \
    RAY_USAGE_STATS_ENABLED=0 DO_NOT_TRACK=1 DAFT_ANALYTICS_ENABLED=0 \
    PATH="$(dirname "$PYTHON"):$PATH" \
    "$(dirname "$PYTHON")/ray" start --head --block --disable-usage-stats \
    --node-ip-address=127.0.0.1 --port="$(free_port)" --temp-dir="$raytmp" \
    --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
    --num-cpus="${EMBOP_E2E_RAY_CPUS:-$(( $(nproc) > 4 ? $(nproc) : 4 ))}" --num-gpus=0 \
    --object-store-memory=$((1024 * 1024 * 1024))
  wait_for "$dir" ray "Ray dashboard on 127.0.0.1:$DASHBOARD_PORT" probe_dashboard "$token"

  # -- head shim: hosts file + auth token --------------------------------------------------
  cp /etc/hosts "$dir/hosts"
  start_component "$dir" headshim env KUBECONFIG="$KUBECONFIG" \
    "$PYTHON" "$HACK_DIR/e2e-headshim.py" --hosts "$dir/hosts" --token-file "$dir/ray-token"
  wait_for "$dir" headshim "head shim watching" grep -q "watching Ray head services" "$dir/logs/headshim.log"

  # -- KubeRay, seeing $dir/hosts as /etc/hosts ---------------------------------------------
  local health_port
  health_port="$(free_port)"
  start_component "$dir" ray-operator unshare --mount --propagation private \
    sh -c 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' \
    "$dir/hosts" "$dir/resolv.conf" \
    "$kuberay_bin" --kubeconfig="$KUBECONFIG" --enable-leader-election=false \
    --metrics-addr=127.0.0.1:0 --health-probe-bind-address="127.0.0.1:$health_port" \
    --log-stdout-encoder=console
  wait_for "$dir" ray-operator "ray-operator /healthz on 127.0.0.1:$health_port" \
    probe_healthz_http "$health_port"

  umask 077
  cat > "$dir/e2e.env" <<ENV
KUBECONFIG=$KUBECONFIG
RAY_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT
EMBOP_RAY_TOKEN_FILE=$dir/ray-token
EMBOP_E2E_POD_CIDR=$POD_CIDR
EMBOP_E2E_LOGS=$dir/logs
ENV
  trap - EXIT
  log "up: KUBECONFIG=$KUBECONFIG"
  echo "$KUBECONFIG"
}

dir_command_main 25 "$@"; exit $?   # exit here: safe if this file is edited while running
