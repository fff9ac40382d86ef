"""The README's first command, `make demo`, works as written in a fresh clone.

What it does: `git clone` of this repository (its committed HEAD) into a temporary directory,
then `make demo` there, exactly as the README says, and checks that it exits 0 and prints the
summary with every scenario OK and no commit out of order. The demo runs the clone's code:
`make demo` runs `.venv/bin/python -m coordinator.cli demo` from the clone, so the clone's
packages come first on sys.path (checked below, before the demo).

What it reuses: the clone's `.venv` is a directory of links to the virtualenv running this test
(its interpreter, its site-packages), with a fresh `.venv/.installed` stamp, so make does not
reinstall torch and the rest. The optional C extension is built in the clone the way pip
would build it (`setup.py build_ext --inplace`).

What it does not prove: that `make venv` installs the dependencies on a fresh machine (CI
proves that: .ci/run makes a clean clone and runs `make test`, which builds .venv from
nothing); that uncommitted changes work (the clone has only what is committed); that the
README's second command works (CI runs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 240


def _readme_commands() -> list[str]:
    from tests.helpers import doc_commands

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [c.code for c in doc_commands.parse(text, "README.md")]


def _venv_links(clone: Path) -> None:
    """`.venv` in the clone: links to this virtualenv's parts, and a stamp of its own."""
    venv = clone / ".venv"
    venv.mkdir()
    for entry in Path(sys.prefix).iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()  # newer than every file of the clone: nothing to install


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would import code from elsewhere."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MAKE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_make_demo_runs_in_a_fresh_clone(tmp_path: Path) -> None:
    assert "make demo" in _readme_commands()  # the command this test runs is the README's
    git = require_binary("git")
    make = require_binary("make")
    if not (ROOT / ".git").exists():
        pytest.fail(f"{ROOT} is not a git checkout: cannot clone it")
    clone = tmp_path / "chronotick"
    subprocess.run([git, "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    _venv_links(clone)
    env = _clean_env()
    python = clone / ".venv" / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import chronotick, coordinator; print(chronotick.__file__, "
         "coordinator.__file__)"],
        cwd=clone, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert all(p.startswith(str(clone)) for p in where.stdout.split()), where.stdout
    build = subprocess.run(
        [str(python), "setup.py", "--quiet", "build_ext", "--inplace"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]

    process = subprocess.Popen(
        [make, "demo"], cwd=clone, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the demo stops the nodes it started and removes their segments
        os.killpg(process.pid, signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f"make demo did not finish in {DEMO_TIMEOUT_S} s:\n{output[-4000:]}")
    assert process.returncode == 0, output[-6000:]
    lines = output.splitlines()
    assert lines[0].startswith(".venv/bin/python -m coordinator.cli demo"), lines[:3]
    for scenario in ("simple", "periodic", "write"):
        row = [line for line in lines if line.split()[:1] == [scenario]]
        assert row and row[-1].split()[-1] == "OK", f"{scenario}: {row}\n{output[-3000:]}"
    assert any("ordering violations: 0" in line for line in lines), output[-3000:]
    shutil.rmtree(clone / "build", ignore_errors=True)
