"""Every command of the documentation runs, and prints what the page shows.

The convention a page follows is in tests/helpers/doc_commands.py: console blocks, `$ `
commands, `&` for the background, `# exit code N` for a command that must fail, shown output
matched with numbers as wildcards. Each page runs in order in one bash session with only
loopback (no Internet) and a /dev/shm of its own, in a scratch directory that looks like the
repository's top level, with the virtualenv of this test run on PATH.

Some commands are not run here, each for a reason and with another check (`not_run`):

- `make TARGET`: it installs into .venv (a test must not reinstall the environment it runs in).
  Here `make -n TARGET` must plan it; `make demo` itself runs in a fresh clone in
  test_readme_newcomer.py, and `make test` is what CI runs on a clean clone.
- `pip install ...`: installs. Here every extra it names must exist in pyproject.toml.
- the benchmarks: minutes each, and not tests (benchmarks print ratios, they assert nothing).
  Here the script must start and its `--help` must know every option the page gives it; the
  quick variant of the chrony benchmark runs in test_chrony_head_to_head.py.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.helpers import doc_commands
from tests.helpers.doc_commands import DocCommand, DocShell, NamespaceUnavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a foreground command may take this long (a wait for synchronization, a scenario)
COMMAND_TIMEOUT_S = 120.0
#: the lines shown under a background command must appear in its log within this
BACKGROUND_TIMEOUT_S = 60.0
SHELL_FENCES = ("sh", "bash", "shell", "zsh")


def page_commands(page: Path) -> list[DocCommand]:
    return doc_commands.parse(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))


def not_run(command: DocCommand) -> str | None:
    """Why this test does not run `command` (and checks it otherwise), or None: it runs."""
    words = command.code.split()
    if words and words[0] == "sudo":
        words = words[1:]
    if words[:1] == ["make"]:
        return "make"
    if words[:2] == ["pip", "install"] or words[1:4] == ["-m", "pip", "install"]:
        return "pip"
    if any(w.startswith("benchmarks/") or w.startswith("benchmarks.") for w in words):
        return "benchmark"
    return None


def pages_with_commands() -> Iterator[Path]:
    for page in PAGES:
        if any(not_run(c) is None for c in page_commands(page)):
            yield page


@pytest.fixture(scope="module")
def namespace() -> None:
    try:
        doc_commands.namespace_prefix()
        doc_commands.ip_binary()
    except NamespaceUnavailable as exc:
        unavailable(str(exc))


def scratch_checkout(directory: Path) -> Path:
    """A directory that looks like the repository's top level (links to its entries), beside
    `shared` (../shared, where the traces live), with `.venv` the virtualenv running the tests."""
    checkout = directory / "repo"
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv"):
            (checkout / entry.name).symlink_to(entry)
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (directory / "shared").symlink_to(shared)
    return checkout


def session_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOTICK_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)  # the code of this checkout, whatever the venv points at
    env["PYTHONUNBUFFERED"] = "1"  # what a terminal shows at once, a log shows at once
    return env


def test_pages_put_their_commands_where_the_test_finds_them() -> None:
    """A command in an `sh` block or an indented block would never be run: refuse them."""
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for info, line, _ in doc_commands.fenced_blocks(text):
            if info in SHELL_FENCES:
                problems.append(f"{page.relative_to(ROOT)}:{line - 1}: ```{info} block")
        for number, line in doc_commands.unfenced_lines(text):
            if re.match(r"( {4}|\t)(\$ |\.venv/|sudo |make |python |chronotick-)", line):
                problems.append(f"{page.relative_to(ROOT)}:{number}: indented command")
        page_commands(page)  # every console block parses
    assert not problems, "use ```console blocks with `$ ` commands:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("page", list(pages_with_commands()), ids=lambda p: p.name)
def test_page_commands_run_as_shown(page: Path, tmp_path: Path, namespace: None) -> None:
    commands = [c for c in page_commands(page) if not_run(c) is None]
    logs = tmp_path / "logs"
    logs.mkdir()
    shell = DocShell(scratch_checkout(tmp_path), session_env(), logs)
    timings: list[str] = []
    try:
        for command in commands:
            started = time.monotonic()
            if command.background:
                job = shell.start(command)
                if command.expected:
                    assert job.log is not None, f"{command.where}: output shown but redirected"
                    missing = shell.wait_for_output(job, BACKGROUND_TIMEOUT_S)
                    assert not missing, (
                        f"{command.where}: `{command.first_line}` did not print {missing[0]!r}"
                        f" within {BACKGROUND_TIMEOUT_S:.0f} s; its log:\n{job.text()[-4000:]}"
                    )
            else:
                result = shell.run(command, COMMAND_TIMEOUT_S)
                context = _context(command, result.output, shell)
                assert result.exit_code == command.exit_code, (
                    f"{command.where}: `{command.first_line}` exited {result.exit_code}, "
                    f"the page says {command.exit_code}\n{context}"
                )
                missing = doc_commands.missing_lines(command.expected, result.output)
                assert not missing, f"{command.where}: not printed: {missing[0]!r}\n{context}"
            timings.append(f"{time.monotonic() - started:6.1f} s  {command.first_line[:80]}")
    finally:
        shell.close()
    print(f"\n{page.name}:", *timings, sep="\n  ")


def _context(command: DocCommand, output: list[str], shell: DocShell) -> str:
    text = "it printed:\n" + "\n".join(output[-60:])
    for job in shell.backgrounds:
        text += f"\n--- background `{job.command.first_line}`:\n{job.text()[-3000:]}"
    return text


def test_commands_not_run_are_checked_otherwise() -> None:
    checked = {"make": 0, "pip": 0, "benchmark": 0}
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    for page in PAGES:
        for command in page_commands(page):
            kind = not_run(command)
            if kind is None:
                continue
            checked[kind] += 1
            words = shlex.split(command.code)
            if kind == "make":
                plan = subprocess.run(
                    ["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True
                )
                assert plan.returncode == 0, f"{command.where}: {plan.stderr}"
            elif kind == "pip":
                for word in words:
                    for extra in re.findall(r"\[([^\]]+)\]", word):
                        assert set(extra.split(",")) <= extras, f"{command.where}: {extra}"
            else:
                _check_benchmark(command, words)
    assert checked["make"] >= 2, checked  # README's two commands at least


def _check_benchmark(command: DocCommand, words: list[str]) -> None:
    if words[0] == "sudo":
        words = words[1:]
    assert words[0].endswith("python"), f"{command.where}: run benchmarks with the venv's python"
    target = words[1:3] if words[1] == "-m" else words[1:2]
    options = [w.split("=")[0] for w in words[len(target) + 1 :] if w.startswith("--")]
    help_text = subprocess.run(
        [sys.executable, *target, "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert help_text.returncode == 0, f"{command.where}: {help_text.stderr[-2000:]}"
    for option in options:
        assert option in help_text.stdout, f"{command.where}: {target} has no {option}"
