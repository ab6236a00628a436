"""Supervision of the local clusters' component processes (etcd, kube-apiserver, kwok, Ray...).

Each component runs in a session of its own (so the caller's terminal signals never reach it,
it may outlive the caller, and its whole process group can be signalled), with its output in
``<dir>/logs/<name>.log`` (the previous run's in ``.log.prev``). ``<dir>/components.json`` names
every started component with its pid and the pid's start time, so that a reused pid is never
mistaken for it, ``up`` can tell what still runs, and ``down`` works from another process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.waiting import wait_for

STATE_FILE = "components.json"
TERM_GRACE = 20.0  # seconds a process group gets to exit on SIGTERM before SIGKILL
KILL_GRACE = 10.0
LOG_TAIL = 40


class ComponentError(RuntimeError):
    """A component exited, or did not get ready in time; the message has its log tail."""


@dataclass(frozen=True)
class Proc:
    """What /proc/<pid>/stat says about a process that matters here."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    started: int  # clock ticks after boot: (pid, started) names one process, ever


def parse_stat(text: str) -> Proc:
    """Parse /proc/<pid>/stat; comm (in parentheses) may itself contain spaces and ')'."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    return Proc(
        pid=int(head.split("(", 1)[0]),
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        started=int(fields[19]),
    )


def read_proc(pid: int) -> Proc | None:
    """The process, or None if there is none (a zombie counts as none: it has exited)."""
    try:
        proc = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return None if proc.state in ("Z", "X") else proc


def all_procs() -> list[Proc]:
    procs = (read_proc(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [p for p in procs if p is not None]


def family(leader: int, procs: Sequence[Proc]) -> list[Proc]:
    """The leader, every descendant (also those that made sessions of their own, like Ray's
    job drivers) and every process still in the leader's process group or session."""
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found = {p.pid: p for p in procs if leader in (p.pid, p.pgrp, p.session)}
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child.pid)
    return list(found.values())


def still_running(procs: Sequence[Proc]) -> list[Proc]:
    return [p for p in procs if (now := read_proc(p.pid)) and now.started == p.started]


class Components:
    """The components started in one directory: start, wait until ready, stop, state."""

    def __init__(self, directory: Path, log: Callable[[str], None] = print):
        self.dir = directory
        self.logs = directory / "logs"
        self.log = log
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # ---- state --------------------------------------------------------------------------
    def _state(self) -> dict[str, dict[str, int]]:
        try:
            return json.loads((self.dir / STATE_FILE).read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def _save(self, state: Mapping[str, Mapping[str, int]]) -> None:
        if not state:
            (self.dir / STATE_FILE).unlink(missing_ok=True)
            return
        tmp = self.dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.dir / STATE_FILE)

    def names(self) -> list[str]:
        """Components started and not stopped, in start order."""
        return list(self._state())

    def process(self, name: str) -> Proc | None:
        """The component's process while it runs."""
        child = self._children.get(name)
        if child is not None:
            child.poll()  # reap it if it exited, so that it is not a zombie of ours
        entry = self._state().get(name)
        proc = read_proc(entry["pid"]) if entry else None
        return proc if proc and entry and proc.started == entry["started"] else None

    def running(self, *names: str) -> bool:
        return all(self.process(n) for n in names)

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def tail(self, name: str, lines: int = LOG_TAIL) -> str:
        try:
            text = self.log_file(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- start, ready, stop --------------------------------------------------------------
    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        """Start a component in its own session, with its log file; returns its pid."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log_file = self.log_file(name)
        if log_file.exists():
            log_file.replace(log_file.with_suffix(".log.prev"))
        self.log(f"starting {name}")
        with log_file.open("wb") as out:
            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        self._children[name] = child
        proc = read_proc(child.pid)
        state = self._state()
        state[name] = {"pid": child.pid, "started": proc.started if proc else -1}
        self._save(state)
        return child.pid

    def ready(self, name: str, what: str, probe: Callable[[], object], timeout: float) -> None:
        """Wait until probe() is truthy; fail at once, with its log tail, if the component
        exits first, or with the same tail when the deadline passes."""

        def check() -> object:
            if not self.process(name):
                raise ComponentError(
                    f"{name} exited before {what} (log {self.log_file(name)}):\n{self.tail(name)}"
                )
            try:
                return probe()
            except OSError:  # refused, reset, timed out: not ready yet
                return False

        try:
            wait_for(check, timeout=timeout, interval=0.5, message=what)
        except TimeoutError as e:
            raise ComponentError(f"{e} (log {self.log_file(name)}):\n{self.tail(name)}") from e
        self.log(f"{what}: ok")

    def stop(self, name: str) -> None:
        """SIGTERM the component's process group and every descendant, SIGKILL what is left
        after TERM_GRACE seconds; forget it. A no-op for one that is not running."""
        leader = self.process(name)
        if leader is not None:
            self.log(f"stopping {name} (pid {leader.pid})")
            members = family(leader.pid, all_procs())
            for sig, grace in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, KILL_GRACE)):
                self._signal(leader.pid, members, sig)
                try:
                    wait_for(lambda: not still_running(members), timeout=grace, interval=0.1)
                    break
                except TimeoutError:
                    left = ", ".join(str(p.pid) for p in still_running(members))
                    self.log(f"{name}: {left} outlived {sig.name}")
        child = self._children.pop(name, None)
        if child is not None:
            child.poll()
        state = self._state()
        if state.pop(name, None) is not None:
            self._save(state)

    def _signal(self, leader: int, members: Sequence[Proc], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, sig)
        for proc in still_running(members):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, sig)

    def stop_all(self) -> None:
        """Stop every component, the last started first."""
        for name in reversed(self.names()):
            self.stop(name)


def bring_up(
    directory: Path,
    running: Callable[[], bool],
    down: Callable[[], None],
    start: Callable[[], None],
    log: Callable[[str], None],
) -> None:
    """Start a stack of components, or reuse it when it runs: a half-dead one is stopped
    first, and a failed start leaves no process behind."""
    directory.mkdir(parents=True, exist_ok=True)
    if running():
        log(f"already up: {directory}")
        return
    down()
    try:
        start()
    except BaseException:
        log("start failed; stopping what was started")
        down()
        raise
