#!/usr/bin/env bash
# hack/lib.sh — process helpers shared by hack/cluster.sh and hack/e2e.sh (sourced).
# Each component runs in its own session (setsid) with <dir>/<name>.pid holding
# "<pid> <start time>", so a reused pid is never mistaken for the component.
# The caller sets LOG_TAG (e.g. cluster, e2e) and TIMEOUT (seconds).

log() { printf '[%s] %s\n' "${LOG_TAG:-hack}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${LOG_TAG:-hack}" "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required"; }

start_time() { # start_time <pid>: field 22 of /proc/<pid>/stat (clock ticks since boot)
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"   # drop "pid (comm) ": comm may contain spaces
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

pid_of() { # pid_of <dir> <component>: print pid if the pid file names a live process of it
  local f="$1/$2.pid" pid started
  [[ -f "$f" ]] || return 1
  read -r pid started < "$f" 2>/dev/null || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n "${started:-}" ]]; then
    [[ "$(start_time "$pid")" == "$started" ]] || return 1
  else  # a pid file of the older one-field format: the process must be the component
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "/$2 " || return 1
  fi
  echo "$pid"
}

group_alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }

stop_component() { # stop_component <dir> <component>: SIGTERM its process group, then SIGKILL
  local dir="$1" c="$2" pid deadline
  if pid="$(pid_of "$dir" "$c")"; then
    log "stopping $c (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while group_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if group_alive "$pid"; then
      log "$c (pid $pid) or its process group ignored SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while group_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    fi
  fi
  rm -f "$dir/$c.pid"
}

start_component() { # start_component <dir> <component> <command> args...
  local dir="$1" c="$2" pid; shift 2
  mkdir -p "$dir/logs"
  log "starting $c"
  [[ ! -f "$dir/logs/$c.log" ]] || mv -f "$dir/logs/$c.log" "$dir/logs/$c.log.prev"
  # setsid: own session and process group, so the caller's terminal/job signals don't
  # reach it, it outlives this script, and stop_component can signal the whole group.
  # In a non-interactive shell the `&` child is not a group leader, so setsid does not
  # fork and $! is the component's pid.
  setsid "$@" >"$dir/logs/$c.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid $(start_time "$pid")" > "$dir/$c.pid"
}

# wait_for <dir> <component> <description> <command...>: poll until command succeeds,
# the component dies, or the deadline passes.
wait_for() {
  local dir="$1" c="$2" what="$3"; shift 3
  local deadline=$((SECONDS + ${TIMEOUT:-180}))
  while ! "$@" >/dev/null 2>&1; do
    if ! pid_of "$dir" "$c" >/dev/null; then
      tail -n 40 "$dir/logs/$c.log" >&2 || true
      die "$c exited before $what (log: $dir/logs/$c.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$dir/logs/$c.log" >&2 || true
      die "timed out after ${TIMEOUT:-180}s waiting for $what (log: $dir/logs/$c.log)"
    fi
    sleep 0.5
  done
  log "$what: ok"
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# dir_command_main <N> <args...>: the `up|down|status <dir>` entry point of cluster.sh and
# e2e.sh; calls cmd_<command> <dir>. Usage is the script's header comment, lines 3 to N.
dir_command_main() {
  local last="$1"; shift
  case "${1:-}" in
    up|down|status)
      [[ $# -eq 2 ]] || { header_usage "$last" >&2; exit 2; }
      "cmd_$1" "$2" ;;
    -h|--help|help|"") header_usage "$last" ;;
    *) header_usage "$last" >&2; exit 2 ;;
  esac
}

header_usage() { sed -n "3,$1p" "$0" | sed 's/^# \{0,1\}//'; }
