"""Component supervision (tests/support/components.py) on plain processes: start in a session
of its own, readiness with a deadline, death noticed with the log tail, whole-family stop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import components
from tests.support.components import ComponentError, Components, Proc, family, parse_stat
from tests.support.waiting import wait_for

# A parent that starts a child in a session of its own (as Ray's job drivers are), writes the
# child's pid to a file, then waits.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
print("parent ready", flush=True)
time.sleep(600)
"""


def test_stat_is_parsed_even_when_the_command_name_has_spaces_and_parens() -> None:
    line = "4242 (a) (b c) S 1 4242 4242 0 -1 4194560 " + " ".join(["0"] * 12) + " 98765 0 0"
    assert parse_stat(line) == Proc(4242, "S", 1, 4242, 4242, 98765)


def test_family_is_the_group_the_session_and_every_descendant() -> None:
    procs = [
        Proc(10, "S", 1, 10, 10, 0),  # the leader
        Proc(11, "S", 10, 10, 10, 0),  # its child
        Proc(12, "S", 11, 12, 12, 0),  # a grandchild in a session of its own
        Proc(13, "S", 12, 12, 12, 0),  # that one's child
        Proc(14, "S", 1, 10, 10, 0),  # reparented, still in the group
        Proc(20, "S", 1, 20, 20, 0),  # someone else's
    ]
    assert sorted(p.pid for p in family(10, procs)) == [10, 11, 12, 13, 14]


def test_a_component_and_its_detached_child_are_stopped_from_another_instance(
    tmp_path: Path,
) -> None:
    started = Components(tmp_path, log=lambda _: None)
    pid_file = tmp_path / "child.pid"
    started.start("parent", [sys.executable, "-c", PARENT, str(pid_file)])
    started.ready("parent", "parent ready", lambda: "parent ready" in started.tail("parent"), 30)
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=30))
    assert components.read_proc(child) is not None

    other = Components(tmp_path, log=lambda _: None)  # e.g. `down` from another process
    assert other.names() == ["parent"] and other.running("parent")
    other.stop("parent")
    assert components.read_proc(child) is None
    assert not started.running("parent") and other.names() == []
    other.stop("parent")  # idempotent


def test_a_component_that_exits_before_it_is_ready_fails_with_its_log_tail(
    tmp_path: Path,
) -> None:
    supervisor = Components(tmp_path, log=lambda _: None)
    supervisor.start("doomed", ["sh", "-c", "echo 'bad flag --frobnicate'; exit 3"])
    with pytest.raises(ComponentError, match="doomed exited before it listens") as failure:
        supervisor.ready("doomed", "it listens", lambda: False, timeout=30)
    assert "bad flag --frobnicate" in str(failure.value)


def test_readiness_has_a_deadline_and_the_message_shows_the_log(tmp_path: Path) -> None:
    supervisor = Components(tmp_path, log=lambda _: None)
    supervisor.start("slow", ["sh", "-c", "echo still warming up; exec sleep 600"])
    with pytest.raises(ComponentError, match="timed out after 1s waiting for ready") as failure:
        supervisor.ready("slow", "ready", lambda: False, timeout=1)
    assert "still warming up" in str(failure.value)
    supervisor.stop_all()
    assert supervisor.names() == []


def test_a_component_ignoring_sigterm_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(components, "TERM_GRACE", 0.5)
    supervisor = Components(tmp_path, log=lambda _: None)
    supervisor.start("stubborn", ["sh", "-c", "trap '' TERM; echo up; exec sleep 600"])
    supervisor.ready("stubborn", "up", lambda: "up" in supervisor.tail("stubborn"), 30)
    pid = supervisor.process("stubborn")
    supervisor.stop("stubborn")
    assert pid is not None and components.read_proc(pid.pid) is None


def test_a_restart_keeps_the_previous_log(tmp_path: Path) -> None:
    supervisor = Components(tmp_path, log=lambda _: None)
    for word in ("first", "second"):
        supervisor.start("echo", ["sh", "-c", f"echo {word}; exec sleep 600"])
        supervisor.ready("echo", word, lambda w=word: w in supervisor.tail("echo"), 30)
        supervisor.stop("echo")
    assert (tmp_path / "logs" / "echo.log.prev").read_text() == "first\n"
    assert (tmp_path / "logs" / "echo.log").read_text() == "second\n"
