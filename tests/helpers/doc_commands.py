"""The shell commands of the documentation, and a shell that runs them as a reader would.

The convention (README.md and docs/*.md):

- Commands live in fenced blocks whose info string is `console`. A line that starts with `$ `
  is a command; a command continues on the next line after a trailing `\\`, and a heredoc
  (`<<'EOF'`) continues to its terminator. The other lines, up to the next command, are what
  the command prints (blank lines are ignored).
- Every command must exit 0, unless it ends with a comment `# exit code N`.
- A command that ends with `&` runs in the background, as in a shell; what it prints goes to a
  log file (unless the command redirects it itself), and the lines shown under it must appear
  there: that is how a page says "wait until the server is up".
- Shown output is matched line by line, in order, against what the command printed (lines
  may be left out). Numbers match any number (`+0.185` matches `-0.013`: times and offsets
  differ on every run), runs of spaces match any spaces, and `...` matches anything (a line
  of its own `...` only says that lines were left out).

The commands of one page run in order, in one bash session (so `cd`, variables and jobs carry
over), in a network namespace of their own that has only loopback (no Internet: a page must not
need it) and a /dev/shm of its own (the page's segment names and ports cannot collide with
anything else on the machine). Its working directory is a scratch directory whose entries link
to the repository's top level, beside a `shared` link to `../shared`, with `.venv` linking to
the virtualenv the tests run in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<rest>.*)$")
HEREDOC_RE = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
EXIT_CODE_RE = re.compile(r"#.*\bexit code (\d+)")
#: a number, with its unit when it is a duration: the tools print a duration in the unit that
#: suits its size (`+986 ns` where the page shows `-48.3 µs`), so the unit varies with the number
NUMBER_RE = re.compile(r"[+-]?\d+(?:[.,]\d+)*(?:\s?(?:ns|µs|us|ms|s)\b)?")
ELLIPSIS = "..."


class DocFormatError(ValueError):
    """A console block this parser cannot read; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class DocCommand:
    """One `$ ` command of a page and the output shown under it."""

    path: str
    line: int
    #: the command as typed, without the prompt (several lines for continuations, heredocs)
    text: str
    expected: tuple[str, ...] = ()

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]

    @property
    def code(self) -> str:
        """The first line without its comment."""
        return split_comment(self.first_line)[0].rstrip()

    @property
    def background(self) -> bool:
        return self.code.endswith("&") and not self.code.endswith("&&")

    @property
    def exit_code(self) -> int:
        found = EXIT_CODE_RE.search(split_comment(self.first_line)[1])
        return int(found.group(1)) if found else 0

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def split_comment(line: str) -> tuple[str, str]:
    """A shell line as (code, comment): `#` starts a comment at the start of a word, outside
    quotes."""
    quote = ""
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i:]
    return line, ""


def _opening(line: str) -> tuple[int, str, str] | None:
    """(indent, fence, info string) if `line` opens a fenced block (CommonMark: up to three
    spaces of indentation; a backtick fence's info string holds no backtick)."""
    found = FENCE_RE.match(line)
    if not found:
        return None
    fence, rest = found.group("fence"), found.group("rest")
    if fence[0] == "`" and "`" in rest:
        return None
    words = rest.split()
    return len(found.group("indent")), fence, words[0] if words else ""


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and stripped.startswith(fence)
        and set(stripped) == {fence[0]}
    )


def fenced_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(info string, line number of the first content line, content lines) of every fenced
    block, the fence's indentation taken off its lines."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _opening(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening
        content: list[str] = []
        start = i + 2
        i += 1
        while i < len(lines) and not _closes(lines[i], fence):
            line = lines[i]
            content.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        yield info, start, content
        i += 1


def unfenced_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line outside the fenced blocks."""
    fenced: set[int] = set()
    for _info, start, content in fenced_blocks(text):
        fenced.update(range(start - 1, start + len(content) + 1))
    for number, line in enumerate(text.splitlines(), 1):
        if number not in fenced:
            yield number, line


def parse(text: str, path: str) -> list[DocCommand]:
    """Every command of the console blocks of one page, in order."""
    found: list[DocCommand] = []
    for info, start, content in fenced_blocks(text):
        if info != "console":
            continue
        commands_here = 0
        i = 0
        while i < len(content):
            line = content[i]
            if not line.startswith("$ "):
                if line.strip():
                    if not found or commands_here == 0:
                        raise DocFormatError(f"{path}:{start + i}: output before any command")
                    last = found[-1]
                    found[-1] = dataclasses.replace(last, expected=(*last.expected, line))
                i += 1
                continue
            line_no = start + i
            parts = [line[2:]]
            i += 1
            while split_comment(parts[-1])[0].rstrip().endswith("\\"):
                if i >= len(content):
                    raise DocFormatError(f"{path}:{line_no}: the block ends inside a command")
                parts.append(content[i])
                i += 1
            heredoc = HEREDOC_RE.search(split_comment(parts[0])[0])
            if heredoc:
                terminator = heredoc.group(2)
                while True:
                    if i >= len(content):
                        raise DocFormatError(f"{path}:{line_no}: heredoc {terminator} not closed")
                    parts.append(content[i])
                    i += 1
                    if parts[-1].strip() == terminator:
                        break
            found.append(DocCommand(path, line_no, "\n".join(parts)))
            commands_here += 1
        if commands_here == 0:
            raise DocFormatError(f"{path}:{start}: a console block without a `$ ` command")
    return found


# -- matching shown output ---------------------------------------------------------------------


def _pattern(expected: str) -> re.Pattern[str]:
    """A shown line as a regular expression over a normalized printed line."""
    pieces = []
    for i, chunk in enumerate(normalize(expected).split(ELLIPSIS)):
        if i:
            pieces.append(".*")
        pieces.append(re.escape(chunk).replace("\\#", "#"))
    return re.compile("".join(pieces))


def normalize(line: str) -> str:
    """Numbers (durations with their unit) as `#`, runs of white space as one space, no space
    at either end."""
    return " ".join(NUMBER_RE.sub("#", line).split())


def missing_lines(expected: tuple[str, ...], printed: list[str]) -> list[str]:
    """The shown lines that do not appear, in order, in what was printed (empty: all do)."""
    normalized = [normalize(line) for line in printed]
    position = 0
    for index, line in enumerate(expected):
        if line.strip() == ELLIPSIS:  # "left out": lines may be left out anywhere anyway
            continue
        pattern = _pattern(line)
        while position < len(normalized) and not pattern.fullmatch(normalized[position]):
            position += 1
        if position >= len(normalized):
            return list(expected[index:])
        position += 1
    return []


# -- the shell ---------------------------------------------------------------------------------


class NamespaceUnavailable(RuntimeError):
    """This machine cannot give the commands a network namespace and a /dev/shm of their own."""


def namespace_prefix() -> list[str]:
    """The `unshare` call that gives a process its own network and mount namespaces (as root;
    otherwise inside a user namespace, where the kernel allows that)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise NamespaceUnavailable("unshare is not installed (util-linux)")
    prefixes = [[unshare, "--net", "--mount"]]
    if os.geteuid() != 0:
        prefixes = [[unshare, "--user", "--map-root-user", "--net", "--mount"]]
    for prefix in prefixes:
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return prefix
        reason = probe.stderr.strip()
    raise NamespaceUnavailable(f"{' '.join(prefixes[-1])} failed: {reason}")


def ip_binary() -> str:
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if found is None:
        raise NamespaceUnavailable("ip is not installed (iproute2)")
    return found


@dataclasses.dataclass(frozen=True)
class Result:
    exit_code: int
    output: list[str]


@dataclasses.dataclass(frozen=True)
class Background:
    command: DocCommand
    pid: int
    log: Path | None

    def text(self) -> str:
        if self.log is None:
            return "(the command redirects its own output)"
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"


class DocShell:
    """One bash session in namespaces of its own; every command's output and exit code."""

    def __init__(self, cwd: Path, env: dict[str, str], log_dir: Path) -> None:
        self.log_dir = log_dir
        self.marker = f"__DOCTEST_{secrets.token_hex(6)}__"
        setup = (
            f"set -e; {ip_binary()} link set lo up; "
            "mount -t tmpfs -o size=16m,mode=1777 chronotick-docs /dev/shm; set +e; "
            "exec bash --noprofile --norc"
        )
        self.process = subprocess.Popen(
            [*namespace_prefix(), "bash", "--noprofile", "--norc", "-c", setup],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.backgrounds: list[Background] = []
        self._count = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def _collect(self, timeout_s: float, what: str) -> Result:
        """The lines up to this command's marker, and the number the marker carries."""
        deadline = time.monotonic() + timeout_s
        output: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(
                    f"{what} did not finish within {timeout_s:.0f} s; it printed:\n"
                    + "\n".join(output[-40:])
                ) from None
            if line is None:
                raise RuntimeError(f"the shell ended during {what}:\n" + "\n".join(output[-40:]))
            before, marker, after = line.partition(self.marker)
            if marker:
                if before:
                    output.append(before)
                return Result(int(after.split()[0]), output)
            output.append(line)

    def run(self, command: DocCommand, timeout_s: float) -> Result:
        """A foreground command: its output (stdout and stderr) and exit code."""
        self._send(
            "{ " + command.text + "\n} </dev/null 2>&1; "
            f"printf '%s %d\\n' '{self.marker}' \"$?\"\n"
        )
        return self._collect(timeout_s, f"{command.where} `{command.first_line}`")

    def start(self, command: DocCommand) -> Background:
        """A background command (`... &`): started with its output to a log of its own."""
        core = command.code[:-1].rstrip()
        if "\n" in command.text:
            raise ValueError(f"{command.where}: a background command must be one line")
        self._count += 1
        log: Path | None = None
        if ">" in core:  # the page redirects it: leave that alone
            line = f"{core} </dev/null &"
        else:
            log = self.log_dir / f"background-{self._count}.log"
            line = f"{core} >{log} 2>&1 </dev/null &"
        self._send(f"{line} printf '%s %d\\n' '{self.marker}' \"$!\"\n")
        started = Background(command, self._collect(10.0, command.where).exit_code, log)
        self.backgrounds.append(started)
        return started

    def wait_for_output(self, job: Background, timeout_s: float) -> list[str]:
        """Wait until the lines shown under a background command are in its log; returns the
        lines still missing at the timeout or when the process ended (empty: all there)."""
        assert job.log is not None
        deadline = time.monotonic() + timeout_s
        while True:
            missing = missing_lines(job.command.expected, job.text().splitlines())
            if not missing or time.monotonic() > deadline or not alive(job.pid):
                return missing
            time.sleep(0.1)

    def close(self, timeout_s: float = 20.0) -> None:
        """Stop the background jobs (SIGTERM, as a reader's Ctrl-C or `kill` would: nodes
        remove their segments), end the shell, and kill whatever is left of its process group."""
        pgid = self.process.pid
        with contextlib.suppress(OSError, ValueError):
            if self.process.poll() is None:
                self._send(
                    f"kill $(jobs -p) 2>/dev/null; wait; printf '%s %d\\n' '{self.marker}' 0\n"
                )
                with contextlib.suppress(TimeoutError, RuntimeError):
                    self._collect(timeout_s, "stopping the background jobs")
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=5)
        deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.1)
        self._reader.join(timeout=5)


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Processes (not zombies) of process group `pgid`."""
    members = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat_path.parent.name))
    return members
