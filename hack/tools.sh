#!/usr/bin/env bash
# hack/tools.sh — build (once) and locate the binaries the local test control
# plane needs, from Go modules only (no prebuilt downloads, no Docker).
#
#   hack/tools.sh ensure [tool...]   build what is missing; print one path per tool
#   hack/tools.sh path <tool>        print the path if already built (exit 1 if not)
#   hack/tools.sh kuberay-crds       print KubeRay's config/crd/bases dir (downloads module)
#   hack/tools.sh kwok-stages        print kwok's "fast" node/pod lifecycle stage files (one per line)
#   hack/tools.sh versions           print the pinned versions
#   hack/tools.sh list               print the known tool names
#
# Binaries are cached outside the repo in
#   ${EMBOP_TOOLS_CACHE:-$HOME/.cache/embedding-operator/tools}/<tool>-<version>/bin/<tool>
# Only stdout carries paths; all build chatter goes to stderr.
# Every go build runs under `nice -n 19` (the machine is shared).
set -euo pipefail

# ---- pinned versions (override with env) ------------------------------------
K8S_VERSION="${EMBOP_K8S_VERSION:-v1.36.5}"        # newest v1.36 patch the Go proxy serves
ETCD_VERSION="${EMBOP_ETCD_VERSION:-v3.6.16}"      # newest v3.6 patch the Go proxy serves
HELM_VERSION="${EMBOP_HELM_VERSION:-v3.22.0}"
KWOK_VERSION="${EMBOP_KWOK_VERSION:-v0.8.0}"
# KubeRay: v1.7.0 was asked for, but the Go proxy reachable here answers 403
# ("not available") for the v1.7.0 source zip (its .info/.mod are served), so
# the newest version whose source actually downloads is pinned. Override with
# EMBOP_KUBERAY_VERSION=v1.7.0 where that zip is served.
KUBERAY_VERSION="${EMBOP_KUBERAY_VERSION:-v1.6.1}"
# The real node (tests/support/node_cluster.py): kubelet 1.36 supports containerd >= 2.2 only.
CONTAINERD_VERSION="${EMBOP_CONTAINERD_VERSION:-v2.2.9}"
COREDNS_VERSION="${EMBOP_COREDNS_VERSION:-v1.14.7}"
PAUSE_VERSION="3.10-embop1"   # hack/pause/main.go; bump when it changes

TOOLS_CACHE="${EMBOP_TOOLS_CACHE:-$HOME/.cache/embedding-operator/tools}"
# Extra flags for every `go build` (e.g. EMBOP_GO_BUILD_FLAGS="-p 1" to save memory).
GO_BUILD_FLAGS="${EMBOP_GO_BUILD_FLAGS:-}"

K8S_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
ALL_TOOLS=("${K8S_TOOLS[@]}" etcd helm kwok ray-operator containerd coredns pause)
DEFAULT_TOOLS=(etcd kube-apiserver kube-controller-manager kubectl)

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH"

tool_version() {
  case "$1" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet) echo "$K8S_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    ray-operator) echo "$KUBERAY_VERSION" ;;
    containerd) echo "$CONTAINERD_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    pause) echo "$PAUSE_VERSION" ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
  esac
}

tool_dir() { echo "$TOOLS_CACHE/$1-$(tool_version "$1")"; }
tool_bin() { echo "$(tool_dir "$1")/bin/$1"; }

is_k8s_tool() {
  local t
  for t in "${K8S_TOOLS[@]}"; do [[ "$t" == "$1" ]] && return 0; done
  return 1
}

# go mod download -json MOD@VER, print one field (Dir, GoMod, ...). No jq needed.
mod_field() {
  local modver="$1" field="$2" out
  if ! out="$(nice -n 19 go mod download -json "$modver" 2>&1)"; then
    die "go mod download $modver failed: $(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",$/\1/p' | head -n1)"
  fi
  printf '%s\n' "$out" | sed -n "s/^[[:space:]]*\"$field\": \"\(.*\)\",\{0,1\}$/\1/p" | head -n1
}

# Module paths in the require blocks / lines of a go.mod file.
gomod_requires() {
  awk '
    /^require[[:space:]]*\(/ { inreq=1; next }
    inreq && /^\)/ { inreq=0; next }
    inreq && NF >= 2 && $1 !~ /^\/\// { print $1; next }
    /^require[[:space:]]+[^(]/ { print $2 }
  ' "$1"
}

# "old => ./path" replace targets of a go.mod file (local-path replaces).
gomod_local_replaces() {
  awk '
    /^replace[[:space:]]*\(/ { inrep=1; next }
    inrep && /^\)/ { inrep=0; next }
    inrep && $2 == "=>" && $3 ~ /^\.\.?\// { print $1; next }
    /^replace[[:space:]]+[^(]/ && $3 == "=>" && $4 ~ /^\.\.?\// { print $2 }
  ' "$1"
}

# go / godebug directives of a dependency go.mod, to copy into a wrapper module
# (a dependency's godebug lines are ignored by Go, so behaviour would differ).
gomod_header() {
  grep -E '^(go|godebug)[[:space:]]' "$1" || true
}

# Record what was built and how long it took (read by hack/README.md's author).
record_build() {
  local tool="$1" secs="$2" how="$3"
  mkdir -p "$(tool_dir "$tool")"
  printf 'tool=%s\nversion=%s\nbuilt=%s\nwall_seconds=%s\nhow=%s\ngo=%s\n' \
    "$tool" "$(tool_version "$tool")" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$secs" "$how" \
    "$(go env GOVERSION)" > "$(tool_dir "$tool")/build-info.txt"
}

install_bin() { # install_bin <tool> <built-file>
  local tool="$1" src="$2" dir
  dir="$(tool_dir "$tool")/bin"
  mkdir -p "$dir"
  chmod 0755 "$src"
  mv -f "$src" "$dir/$tool.tmp.$$"
  mv -f "$dir/$tool.tmp.$$" "$dir/$tool"   # atomic within the dir
}

# ---- Kubernetes components ----------------------------------------------------
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging
# modules (k8s.io/api, client-go, ...) with ./staging/src paths. We generate a
# throwaway wrapper module that requires k8s.io/kubernetes and replaces every
# required staging module with its published v0.X.Y tag, then `go build` the
# cmd/ packages from it.
k8s_wrapper() {
  local src="$TOOLS_CACHE/src/kubernetes-$K8S_VERSION" kmod staging_ver req m
  staging_ver="v0.${K8S_VERSION#v1.}"
  kmod="$(mod_field "k8s.io/kubernetes@$K8S_VERSION" GoMod)"
  [[ -f "$kmod" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
  mkdir -p "$src"
  req="$(gomod_requires "$kmod")"
  {
    echo "// Generated by hack/tools.sh; throwaway wrapper to build k8s.io/kubernetes commands."
    echo "module embop.local/build/kubernetes"
    echo
    gomod_header "$kmod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $(gomod_local_replaces "$kmod"); do
      # only staging modules k8s.io/kubernetes actually requires (some, e.g.
      # sample-controller, are never published at a tag).
      if grep -qxF "$m" <<<"$req"; then
        echo "	$m => $m $staging_ver"
      fi
    done
    echo ")"
  } > "$src/go.mod.new"
  if ! cmp -s "$src/go.mod.new" "$src/go.mod.gen" 2>/dev/null; then
    cp "$src/go.mod.new" "$src/go.mod"
    cp "$src/go.mod.new" "$src/go.mod.gen"
    rm -f "$src/go.sum"
  fi
  rm -f "$src/go.mod.new"
  echo "$src"
}

k8s_ldflags() {
  local ver="$K8S_VERSION" major minor date pkg flags="-s -w"
  major="${ver#v}"; major="${major%%.*}"
  minor="${ver#v*.}"; minor="${minor%%.*}"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    flags+=" -X $pkg.gitCommit=module-k8s.io/kubernetes@$ver"
  done
  echo "$flags"
}

build_k8s() { # build_k8s tool...
  local src tmp pkgs=() t start secs
  src="$(k8s_wrapper)"
  for t in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
  log "resolving deps for ${pkgs[*]} (k8s.io/kubernetes $K8S_VERSION) in $src"
  (cd "$src" && nice -n 19 go get "${pkgs[@]/%/@$K8S_VERSION}" >&2) \
    || die "go get failed in $src"
  tmp="$(mktemp -d "$TOOLS_CACHE/.build.XXXXXX")"
  log "building $* (k8s $K8S_VERSION) — this takes a while on 2 cores"
  start=$SECONDS
  # shellcheck disable=SC2086
  (cd "$src" && CGO_ENABLED=0 nice -n 19 go build -mod=mod -trimpath \
      -tags selinux,notest,grpcnotrace $GO_BUILD_FLAGS \
      -ldflags "$(k8s_ldflags)" -o "$tmp/" "${pkgs[@]}" >&2) \
    || { rm -rf "$tmp"; die "go build of $* failed"; }
  secs=$((SECONDS - start))
  for t in "$@"; do
    install_bin "$t" "$tmp/$t"
    record_build "$t" "$secs" "go build (together with: $*)"
  done
  rm -rf "$tmp"
  log "built $* in ${secs}s"
}

# ---- etcd ---------------------------------------------------------------------
# go.etcd.io/etcd/server/v3 replaces its sibling modules with ../ paths and the
# real `etcd` main lives in the root module (go.etcd.io/etcd/v3, not served),
# so: wrapper module + tiny main calling etcdmain.Main.
build_etcd() {
  local src="$TOOLS_CACHE/src/etcd-$ETCD_VERSION" smod tmp start secs
  smod="$(mod_field "go.etcd.io/etcd/server/v3@$ETCD_VERSION" GoMod)"
  [[ -f "$smod" ]] || die "could not download go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  mkdir -p "$src"
  {
    echo "// Generated by hack/tools.sh; throwaway wrapper to build etcd."
    echo "module embop.local/build/etcd"
    echo
    gomod_header "$smod"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  } > "$src/go.mod"
  rm -f "$src/go.sum"
  cat > "$src/main.go" <<'EOF'
// Generated by hack/tools.sh: same as etcd's root main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
  log "resolving deps for etcd $ETCD_VERSION in $src"
  (cd "$src" && nice -n 19 go mod tidy >&2) || die "go mod tidy failed in $src"
  tmp="$(mktemp -d "$TOOLS_CACHE/.build.XXXXXX")"
  log "building etcd $ETCD_VERSION"
  start=$SECONDS
  # shellcheck disable=SC2086
  (cd "$src" && CGO_ENABLED=0 nice -n 19 go build -mod=mod -trimpath $GO_BUILD_FLAGS \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION" \
      -o "$tmp/etcd" . >&2) || { rm -rf "$tmp"; die "go build of etcd failed"; }
  secs=$((SECONDS - start))
  install_bin etcd "$tmp/etcd"
  record_build etcd "$secs" "go build via wrapper module"
  rm -rf "$tmp"
  log "built etcd in ${secs}s"
}

# ---- containerd ---------------------------------------------------------------
# containerd's module has no replace directives: a wrapper module that requires it builds
# the daemon, its runc shim (found on containerd's PATH) and ctr into one bin directory.
build_containerd() {
  local src="$TOOLS_CACHE/src/containerd-$CONTAINERD_VERSION" cmod tmp start secs bin b
  local pkg=github.com/containerd/containerd/v2
  cmod="$(mod_field "$pkg@$CONTAINERD_VERSION" GoMod)"
  [[ -f "$cmod" ]] || die "could not download $pkg@$CONTAINERD_VERSION"
  mkdir -p "$src"
  {
    echo "// Generated by hack/tools.sh; throwaway wrapper to build containerd."
    echo "module embop.local/build/containerd"
    echo
    gomod_header "$cmod"
    echo
    echo "require $pkg $CONTAINERD_VERSION"
  } > "$src/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "// Generated by hack/tools.sh: the commands this module builds."
    echo "package tools"
    echo
    echo "import ("
    for b in containerd containerd-shim-runc-v2 ctr; do echo "	_ \"$pkg/cmd/$b\""; done
    echo ")"
  } > "$src/tools.go"
  rm -f "$src/go.sum"
  log "resolving deps for containerd $CONTAINERD_VERSION in $src"
  (cd "$src" && nice -n 19 go mod tidy >&2) || die "go mod tidy failed in $src"
  tmp="$(mktemp -d "$TOOLS_CACHE/.build.XXXXXX")"
  log "building containerd, containerd-shim-runc-v2 and ctr $CONTAINERD_VERSION"
  start=$SECONDS
  # shellcheck disable=SC2086
  (cd "$src" && CGO_ENABLED=0 nice -n 19 go build -mod=mod -trimpath \
      -tags "no_btrfs no_devmapper no_zfs" $GO_BUILD_FLAGS \
      -ldflags "-s -w -X $pkg/version.Version=$CONTAINERD_VERSION" -o "$tmp/" \
      "$pkg/cmd/containerd" "$pkg/cmd/containerd-shim-runc-v2" "$pkg/cmd/ctr" >&2) \
    || { rm -rf "$tmp"; die "go build of containerd failed"; }
  secs=$((SECONDS - start))
  bin="$(tool_dir containerd)/bin"
  mkdir -p "$bin"
  for b in containerd-shim-runc-v2 ctr; do
    chmod 0755 "$tmp/$b" && mv -f "$tmp/$b" "$bin/$b"
  done
  install_bin containerd "$tmp/containerd"   # last: its presence means the set is complete
  record_build containerd "$secs" "go build via wrapper module (with the runc shim and ctr)"
  rm -rf "$tmp"
  log "built containerd in ${secs}s"
}

# ---- pause ----------------------------------------------------------------------
# Every pod's sandbox process, from hack/pause/main.go (tests/support/oci.py makes the image).
build_pause() {
  local src="$TOOLS_CACHE/src/pause-$PAUSE_VERSION" tmp start secs
  mkdir -p "$src"
  cp "$(dirname "${BASH_SOURCE[0]}")/pause/main.go" "$src/main.go"
  printf '// Generated by hack/tools.sh.\nmodule embop.local/build/pause\n\ngo 1.22\n' > "$src/go.mod"
  tmp="$(mktemp -d "$TOOLS_CACHE/.build.XXXXXX")"
  start=$SECONDS
  # shellcheck disable=SC2086
  (cd "$src" && CGO_ENABLED=0 nice -n 19 go build -trimpath $GO_BUILD_FLAGS -ldflags "-s -w" \
      -o "$tmp/pause" . >&2) || { rm -rf "$tmp"; die "go build of pause failed"; }
  secs=$((SECONDS - start))
  install_bin pause "$tmp/pause"
  record_build pause "$secs" "go build of hack/pause/main.go"
  rm -rf "$tmp"
}

# ---- plain `go install` tools ----------------------------------------------------
go_install_tool() { # go_install_tool <tool> <pkg@ver> <binary-name> [ldflags]
  local tool="$1" pkgver="$2" binname="$3" ldflags="${4:-}" tmp start secs
  tmp="$(mktemp -d "$TOOLS_CACHE/.build.XXXXXX")"
  log "go install $pkgver"
  start=$SECONDS
  # shellcheck disable=SC2086
  (GOBIN="$tmp" CGO_ENABLED=0 nice -n 19 go install -trimpath $GO_BUILD_FLAGS \
      -ldflags "-s -w $ldflags" "$pkgver" >&2) || { rm -rf "$tmp"; die "go install $pkgver failed"; }
  secs=$((SECONDS - start))
  install_bin "$tool" "$tmp/$binname"
  record_build "$tool" "$secs" "go install $pkgver"
  rm -rf "$tmp"
  log "built $tool in ${secs}s"
}

build_tool() {
  case "$1" in
    etcd) build_etcd ;;
    helm) go_install_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" helm \
            "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
    kwok) go_install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" kwok \
            "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" ;;
    ray-operator) go_install_tool ray-operator \
            "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" ray-operator ;;
    containerd) build_containerd ;;
    coredns) go_install_tool coredns "github.com/coredns/coredns@$COREDNS_VERSION" coredns \
            "-X github.com/coredns/coredns/coremain.GitCommit=module-$COREDNS_VERSION" ;;
    pause) build_pause ;;
    *) die "no builder for $1" ;;
  esac
}

cmd_ensure() {
  local tools=("$@") t missing_k8s=()
  [[ ${#tools[@]} -gt 0 ]] || tools=("${DEFAULT_TOOLS[@]}")
  for t in "${tools[@]}"; do tool_version "$t" >/dev/null; done
  mkdir -p "$TOOLS_CACHE"
  # One builder at a time per cache (parallel test runs must not race).
  exec 9>"$TOOLS_CACHE/.lock"
  flock 9
  for t in "${tools[@]}"; do
    if is_k8s_tool "$t" && [[ ! -x "$(tool_bin "$t")" ]]; then missing_k8s+=("$t"); fi
  done
  # Build the Kubernetes commands in one `go build` so shared packages compile once.
  [[ ${#missing_k8s[@]} -eq 0 ]] || build_k8s "${missing_k8s[@]}"
  for t in "${tools[@]}"; do
    if ! is_k8s_tool "$t" && [[ ! -x "$(tool_bin "$t")" ]]; then build_tool "$t"; fi
  done
  flock -u 9
  for t in "${tools[@]}"; do
    [[ -x "$(tool_bin "$t")" ]] || die "$t missing after build"
    tool_bin "$t"
  done
}

cmd_path() {
  [[ $# -eq 1 ]] || die "usage: $0 path <tool>"
  local b; b="$(tool_bin "$1")"
  [[ -x "$b" ]] || { log "$1 not built; run: $0 ensure $1"; exit 1; }
  echo "$b"
}

cmd_kuberay_crds() {
  local dir
  dir="$(mod_field "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" Dir)"
  [[ -d "$dir/config/crd/bases" ]] || die "no config/crd/bases in $dir"
  echo "$dir/config/crd/bases"
}

cmd_kwok_stages() {
  local dir sub
  dir="$(mod_field "sigs.k8s.io/kwok@$KWOK_VERSION" Dir)/kustomize/stage"
  for sub in node/fast node/heartbeat-with-lease pod/fast; do
    [[ -d "$dir/$sub" ]] || die "no $sub stages in $dir"
    find "$dir/$sub" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort
  done
}

cmd_versions() {
  cat <<EOF
kubernetes=$K8S_VERSION
etcd=$ETCD_VERSION
helm=$HELM_VERSION
kwok=$KWOK_VERSION
kuberay=$KUBERAY_VERSION
containerd=$CONTAINERD_VERSION
coredns=$COREDNS_VERSION
pause=$PAUSE_VERSION
cache=$TOOLS_CACHE
EOF
}

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    ensure) cmd_ensure "$@" ;;
    path) cmd_path "$@" ;;
    kuberay-crds) cmd_kuberay_crds ;;
    kwok-stages) cmd_kwok_stages ;;
    versions) cmd_versions ;;
    list) printf '%s\n' "${ALL_TOOLS[@]}" ;;
    -h|--help|help|"") usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"; exit $?   # exit here: safe if this file is edited while running
