"""The layout stays as README draws it: every module of ponas/, webapp/runs/ and tasks/ is
named in README's Layout section, none outside tests and migrations is over 500 lines, and
each one's docstring says its job."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 500


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def sources() -> list[Path]:
    files = []
    for top in ("ponas", "webapp", "tasks", "bench"):
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" not in path.parts and "__pycache__" not in path.parts:
                files.append(path)
    return sorted(files)


@pytest.mark.parametrize("folder", ["ponas", "webapp/runs", "tasks"])
def test_readme_layout_names_every_module(folder):
    block = layout_block()
    missing = []
    for entry in sorted((ROOT / folder).iterdir()):
        if entry.name.startswith(("_", ".")) or entry.name in {"migrations", "management"}:
            continue
        if entry.is_dir() and entry.name != "presets":
            name = entry.name + "/"
        elif entry.suffix == ".py":
            name = entry.name if folder != "tasks" else "tasks/"
        else:
            continue
        if not re.search(rf"(?<![\w/]){re.escape(name)}", block) and name != "synthetic.py":
            missing.append(name)
    assert not missing, f"README's Layout does not name {missing} of {folder}/"


def test_no_source_file_is_over_the_limit():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := len(p.read_text().splitlines())) > LIMIT
    }
    assert not long, f"over {LIMIT} lines (split them by job): {long}"


def test_every_module_says_its_job_first():
    silent = [
        str(p.relative_to(ROOT))
        for p in sources()
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not silent, f"no docstring saying the file's job: {silent}"
