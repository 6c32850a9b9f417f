"""The project installs (`make venv`: pip install --no-deps -e .): every tracked module imports and every CLI answers
--help from outside the repository with no path set up by hand, and no script puts itself on sys.path."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REINSTALL = "re-run `make venv` (it runs `pip install --no-deps -e .`)"


def tracked_python_files() -> list[str]:
    """Repository-relative paths of the tracked .py files (a test from a fresh clone sees what a user sees)."""
    try:
        out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"needs a git checkout to list the tracked files: {e}")
    return [p for p in out.stdout.splitlines() if (REPO / p).exists()]  # a file deleted but not yet committed


def module_name(path: str) -> str:
    """'tools/serve/app.py' -> 'tools.serve.app'; 'gan/__init__.py' -> 'gan'; 'train_gan.py' -> 'train_gan'."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def outside_env() -> dict:
    """The environment of a user's shell: no PYTHONPATH (tests/conftest.py sets one for the other tests' children)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


_IMPORT_ALL = """
import importlib, json, sys
done = {}
for name in json.loads(sys.argv[1]):
    try:
        done[name] = getattr(importlib.import_module(name), "__file__", None)
    except BaseException as e:  # SystemExit included: importing must not run a CLI
        done[name] = f"{type(e).__name__}: {e}"
print(json.dumps(done))
"""


def test_every_tracked_module_imports_from_another_directory(tmp_path):
    """One child imports them all (TensorFlow once): the packages, bench/ and the three top-level scripts."""
    names = [module_name(p) for p in tracked_python_files() if not p.startswith("tests/")]
    assert {"gan", "tools.serve.app", "bench.train_step", "train_gan", "generate"} <= set(names)
    run = subprocess.run([sys.executable, "-c", _IMPORT_ALL, json.dumps(names)], cwd=tmp_path, env=outside_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    files = json.loads(run.stdout.strip().splitlines()[-1])
    failed = {n: f for n, f in files.items() if not (f or "").endswith(".py")}
    assert failed == {}, f"modules that do not import from {tmp_path}: {failed}; {REINSTALL}"
    elsewhere = {n: f for n, f in files.items() if not Path(f).resolve().is_relative_to(REPO)}
    assert elsewhere == {}, f"the venv's install points at another checkout than {REPO}; {REINSTALL}"


def cli_scripts() -> list[str]:
    """The tracked scripts with an argparse CLI (bench/step_rows.py and bench/peer.py are children, not CLIs)."""
    return [p for p in tracked_python_files() if not p.startswith("tests/")
            and re.search(r'^if __name__ == "__main__"', (REPO / p).read_text(encoding="utf-8"), re.M)
            and "argparse" in (REPO / p).read_text(encoding="utf-8")]


def test_every_cli_and_installed_command_answers_help_from_another_directory(tmp_path):
    scripts = cli_scripts()
    assert {"train_gan.py", "generate.py", "precompute_embeddings.py", "tools/evaluate.py",
            "bench/train_step.py"} <= set(scripts)
    commands = {p: [sys.executable, str(REPO / p), "--help"] for p in scripts}
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert set(declared) == {"t2i-precompute", "t2i-train", "t2i-generate"}
    for name in declared:
        command = Path(sys.executable).parent / name
        assert command.exists(), f"{command} is not installed; {REINSTALL}"
        commands[name] = [str(command), "--help"]
    # all at once: none imports TensorFlow for --help, each costs a Python start
    procs = {k: subprocess.Popen(c, cwd=tmp_path, env=outside_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, c in commands.items()}
    answers = {k: (*p.communicate(timeout=300), p.returncode) for k, p in procs.items()}  # (stdout, stderr, code)
    broken = {k: err[-800:] for k, (out, err, code) in answers.items() if code != 0 or not out.startswith("usage:")}
    assert broken == {}, f"{REINSTALL} if these cannot import the project"
    assert "--embeddings" in answers["t2i-train"][0] and "--run" in answers["t2i-generate"][0]
    assert "--encoder" in answers["t2i-precompute"][0]


def test_no_tracked_file_edits_sys_path():
    """The editable install is how scripts find the packages; a path edit would hide a broken install."""
    edit = re.compile(r"\bsys\.path\.(insert|append)\(")
    found = [f"{p}:{n}" for p in tracked_python_files()
             for n, line in enumerate((REPO / p).read_text(encoding="utf-8").splitlines(), 1) if edit.search(line)]
    assert found == []
