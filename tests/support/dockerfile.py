"""Dockerfiles read as data: their instructions, stages, ENV and COPY sources. The Dockerfile
tests check properties with it, and `make images` keys each image by the files its COPYs
take (tests/support/image_build.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

Instruction = tuple[str, str]  # (INSTRUCTION in upper case, its arguments)


def parse(path: Path) -> list[Instruction]:
    """Instructions in order: comments dropped, ``\\`` continuation lines joined, and the
    build args declared before the first FROM substituted into FROM (their defaults)."""
    instructions: list[Instruction] = []
    global_args: dict[str, str] = {}
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not any(kw == "FROM" for kw, _ in instructions):
            name, _, default = args.partition("=")
            global_args[name] = default
        if keyword == "FROM":
            for name, default in global_args.items():
                args = args.replace("${" + name + "}", default)
        instructions.append((keyword, args))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def args_of(instructions: list[Instruction], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec (JSON array) form: {args}"
    assert all(isinstance(item, str) for item in value)
    return value


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in args_of(instructions, "ENV"):
        for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', args):
            env[key] = value.strip('"')
    return env


def copy_sources(instructions: list[Instruction]) -> list[str]:
    """The build-context paths that COPY and ADD take (not those from other stages)."""
    sources: list[str] = []
    for keyword, args in instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        words = args.split()
        if any(word.startswith("--from") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources += paths[:-1]
    return sources
