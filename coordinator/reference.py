"""The generated parts of the documentation: `python -m coordinator.reference` rewrites them
from the code (`make docs`), `--check` lists the stale ones (`make lint`, and a unit test).

A generated part is the text between `<!-- BEGIN GENERATED name -->` and
`<!-- END GENERATED name -->` in README.md or docs/*.md; `SECTIONS` maps each name to the
function that renders it. Adding a part is one function and one entry: a reference that is
rendered from the definitions cannot drift from them, which a hand-kept table always does.

The configuration reference is rendered from `DaemonConfig` and `NodeConfig` (keys, types,
defaults, and the `#:` comment above each field), from the programs' argument parsers (the
flag of each key) and from the ranges their `__post_init__` checks (and those of `PollPolicy`,
which takes the daemon's poll keys by name). Where a field has no comment (or one comment
speaks for several fields), `MEANINGS` says what it means; the flag's help is the last resort.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import operator
import pathlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

from chronotick.daemon import cli as daemon_cli
from chronotick.daemon.config import DaemonConfig
from chronotick.estimation.estimator import EstimatorConfig
from chronotick.ntp.poll import PollPolicy
from coordinator import cli as node_cli
from coordinator.config import NodeConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN GENERATED {name} -->"
END = "<!-- END GENERATED {name} -->"

#: what a key means where neither its field nor a class it feeds carries a `#:` comment (or
#: where the comment speaks for several fields); it wins over the comment
MEANINGS: dict[tuple[type, str], str] = {
    (DaemonConfig, "servers"): "NTP servers, `HOST` or `HOST:PORT` (port 123 by default); with "
    "three or more, falsetickers are rejected",
    (DaemonConfig, "min_poll_s"): "the shortest poll interval after warm-up (chrony's "
    "`minpoll 6` is 64 s here); the interval doubles while polls agree",
    (DaemonConfig, "max_poll_s"): "the longest poll interval the doubling reaches",
    (DaemonConfig, "burst_spacing_s"): "the pause between the exchanges of one poll",
    (DaemonConfig, "warmup_interval_s"): "the interval of the warm-up polls (like chrony's "
    "`iburst`)",
    (DaemonConfig, "node_id"): "names the segment `chronotick-ID` (when `shm_name` is empty) "
    "and is written into it",
    (DaemonConfig, "log_level"): "what the daemon logs to stderr",
    (DaemonConfig, "publish_rate_hz"): "how often the segment is rewritten",
    (NodeConfig, "node_id"): "required; unique in the cluster; also names the segment "
    "`chronotick-ID`",
    (NodeConfig, "cluster"): "nodes of another cluster name are ignored (discovery) and "
    "refused (calls)",
    (NodeConfig, "discovery"): "zeroconf: announce this node and browse for peers on the "
    "advertise addresses",
    (NodeConfig, "peer_poll_s"): "how often each peer is measured (a burst of `peer_burst` "
    "exchanges, each with the deadline `peer_timeout_s`)",
    (NodeConfig, "peer_burst"): "exchanges with each peer per round; the one with the shortest "
    "round trip is kept",
    (NodeConfig, "peer_timeout_s"): "the deadline of one exchange with a peer",
}

_TYPES = {
    "tuple[str, ...]": "list of strings",
    "tuple[tuple[str, float], ...]": "table",
    "float": "number",
    "int": "integer",
    "bool": "boolean",
    "str": "string",
}


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One row of the configuration reference."""

    key: str
    type: str
    default: str
    flag: str
    meaning: str
    valid: str


@dataclasses.dataclass(frozen=True)
class Bound:
    """A limit a `__post_init__` puts on a key: `key op value`, where `value` is a number, the
    name of another key, or (op `in`) the allowed values."""

    key: str
    op: str
    value: float | str | tuple[str, ...]


# -- reading the code ------------------------------------------------------------------------


def field_comments(cls: type) -> dict[str, str]:
    """The `#:` comment lines right above each field of a dataclass, joined."""
    lines, _ = inspect.getsourcelines(cls)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    comments: dict[str, str] = {}
    for node in body.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                above.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            if above:
                comments[node.target.id] = " ".join(above)
    return comments


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
#: the comparison a failed check refuses -> what a valid value satisfies
_NEGATE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Mult: operator.mul,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Div: operator.truediv,
}
_RANGE_HELPERS = ("_check_range", "_check")


def bounds(cls: type) -> list[Bound]:
    """The limits `cls.__post_init__` checks, in the shapes this code base writes them:
    `_check_range("key", self.key, LOW, HIGH)`, `if not LOW <= self.key <= HIGH: raise`,
    `if self.key < LIMIT [or ...]: raise` (LIMIT a number or `self.other`), and
    `if self.key not in NAMES: raise` (NAMES a constant of the module). Checks of other shapes
    are left out: the reference says only what it can read."""
    post_init = getattr(cls, "__post_init__", None)
    if post_init is None:
        return []
    names = vars(sys.modules[cls.__module__])
    found: list[Bound] = []
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(post_init)))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _RANGE_HELPERS and len(node.args) == 4:
                key = node.args[0]
                low, high = _constant(node.args[2]), _constant(node.args[3])
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    if low is not None and high is not None:
                        found += [Bound(key.value, ">=", low), Bound(key.value, "<=", high)]
        if isinstance(node, ast.If) and len(node.body) == 1 and isinstance(node.body[0], ast.Raise):
            found += _refused(node.test, names)
    return found


def _refused(test: ast.expr, names: dict[str, Any]) -> list[Bound]:
    """The bounds a valid value satisfies, given the condition under which it is refused."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        compare = test.operand
        if (
            isinstance(compare, ast.Compare)
            and len(compare.ops) == 2
            and all(isinstance(op, ast.LtE | ast.Lt) for op in compare.ops)
        ):
            key = _self_attribute(compare.comparators[0])
            low, high = _constant(compare.left), _constant(compare.comparators[1])
            if key and low is not None and high is not None:
                return [
                    Bound(key, _FLIP[_OPS[type(compare.ops[0])]], low),
                    Bound(key, _OPS[type(compare.ops[1])], high),
                ]
        return []
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        parts = [_refused(value, names) for value in test.values]
        return [b for part in parts for b in part] if all(parts) else []
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return []
    left, right = test.left, test.comparators[0]
    if isinstance(test.ops[0], ast.NotIn):
        key = _self_attribute(left)
        allowed = names.get(right.id) if isinstance(right, ast.Name) else None
        if key and isinstance(allowed, tuple) and all(isinstance(a, str) for a in allowed):
            return [Bound(key, "in", allowed)]
        return []
    if type(test.ops[0]) not in _OPS:
        return []
    op = _OPS[type(test.ops[0])]
    key = _self_attribute(left)
    if key is None:  # LIMIT < self.key
        key, op, right = _self_attribute(right), _FLIP[op], left
    if key is None:
        return []
    other = _self_attribute(right)
    limit: float | str | None = other if other is not None else _constant(right)
    return [] if limit is None else [Bound(key, _NEGATE[op], limit)]


def _self_attribute(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id == "self":
            return node.attr
    return None


def _constant(node: ast.expr) -> float | None:
    """A number written as a literal or as arithmetic of literals (`36 * 3600`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if not isinstance(node.value, bool):
            return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _constant(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        left, right = _constant(node.left), _constant(node.right)
        if left is not None and right is not None:
            result: float = _ARITH[type(node.op)](left, right)
            return result
    return None


_SYMBOLS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


def valid_text(key: str, found: list[Bound], keys: set[str]) -> str:
    """What the checks on `key` allow, in words: `1 to 16`, `≥ 1`, `> peer_poll_s`, `one of
    a, b`. A limit that names another field is kept only when that field is a key too."""
    mine = [b for b in found if b.key == key and (not isinstance(b.value, str) or b.value in keys)]
    parts: list[str] = []
    low = [b for b in mine if b.op == ">=" and isinstance(b.value, int | float)]
    high = [b for b in mine if b.op == "<=" and isinstance(b.value, int | float)]
    used: list[Bound] = []
    if low and high:
        lo = max(float(b.value) for b in low)  # type: ignore[arg-type]
        hi = min(float(b.value) for b in high)  # type: ignore[arg-type]
        parts.append(f"{_number(lo)} to {_number(hi)}")
        used = low + high
    for b in mine:
        if b in used:
            continue
        if b.op == "in" and isinstance(b.value, tuple):
            parts.append("one of " + ", ".join(f"`{v}`" for v in b.value))
        elif isinstance(b.value, str):
            parts.append(f"{_SYMBOLS[b.op]} `{b.value}`")
        elif isinstance(b.value, int | float):
            parts.append(f"{_SYMBOLS[b.op]} {_number(b.value)}")
    return ", ".join(dict.fromkeys(parts))


def _number(value: float) -> str:
    return f"{value:g}"


def flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> the option that sets it."""
    return {
        action.dest: action
        for action in parser._actions
        if action.option_strings and action.dest not in ("help", "config")
    }


def start_parser() -> argparse.ArgumentParser:
    """`chronotick-node start`'s parser, out of the program's own."""
    for action in node_cli.parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            start: argparse.ArgumentParser = action.choices["start"]
            return start
    raise AssertionError("chronotick-node has no start command")


def flag_text(action: argparse.Action) -> str:
    option = max(action.option_strings, key=len)
    if action.nargs == 0:  # store_true / store_false
        value = "true" if isinstance(action, argparse._StoreTrueAction) else "false"
        return f"`{option}` (sets {value})"
    metavar = action.metavar or action.dest.upper()
    text = f"`{option} {metavar}`"
    return text + " (repeatable)" if isinstance(action, argparse._AppendAction) else text


def default_text(value: Any, field_type: str) -> str:
    """A default as it would be written in the TOML file."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        if field_type == "tuple[tuple[str, float], ...]":
            return "`{" + ", ".join(f"{k} = {v!r}" for k, v in value) + "}`"
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def key_docs(
    cls: type, parser: argparse.ArgumentParser, comment_sources: tuple[type, ...] = ()
) -> list[KeyDoc]:
    """The rows of one configuration class, in field order."""
    options = flags(parser)
    comments: dict[str, str] = {}
    checks: list[Bound] = []
    for source in reversed((cls, *comment_sources)):
        comments.update(field_comments(source))
        checks += bounds(source)
    keys = {f.name for f in dataclasses.fields(cls)}
    rows = []
    for field in dataclasses.fields(cls):
        if field.name == "daemon":
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        action = options.get(field.name)
        meaning = (
            MEANINGS.get((cls, field.name))
            or comments.get(field.name)
            or (action.help if action is not None and action.help else "")
        )
        rows.append(
            KeyDoc(
                key=field.name,
                type=_TYPES[str(field.type)],
                default=default_text(default, str(field.type)),
                flag=flag_text(action) if action is not None else "(file only)",
                meaning=meaning,
                valid=valid_text(field.name, checks, keys),
            )
        )
    return rows


def daemon_keys() -> list[KeyDoc]:
    return key_docs(DaemonConfig, daemon_cli.parser(), (PollPolicy, EstimatorConfig))


def node_keys() -> list[KeyDoc]:
    return key_docs(NodeConfig, start_parser())


# -- the sections ----------------------------------------------------------------------------


def _table(rows: list[KeyDoc]) -> str:
    lines = ["| key | type | default | flag | meaning | valid |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"`{r.key}`", r.type, r.default, r.flag, r.meaning, r.valid]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def config_reference() -> str:
    return "\n".join(
        [
            "### Keys of `chronotick-daemon` (and of `chronotick-node start`)",
            "",
            "From `DaemonConfig` (`chronotick/daemon/config.py`), its flags from "
            "`chronotick/daemon/cli.py`.",
            "",
            _table(daemon_keys()),
            "",
            "### Keys of `chronotick-node start` only",
            "",
            "From `NodeConfig` (`coordinator/config.py`), its flags from `coordinator/cli.py`.",
            "",
            _table(node_keys()),
        ]
    )


def metrics_reference() -> str:
    """Both catalogs, the one the collectors export from: a renamed metric changes the page."""
    from chronotick.metrics import DAEMON_METRICS, markdown_table
    from coordinator.metrics import NODE_METRICS

    return (
        "Every daemon (`chronotick-daemon` and `chronotick-node start`):\n\n"
        + markdown_table(DAEMON_METRICS)
        + "\nA node adds:\n\n"
        + markdown_table(NODE_METRICS)
    )


SECTIONS: dict[str, Callable[[], str]] = {
    "config": config_reference,
    "metrics": metrics_reference,
}


# -- the files -------------------------------------------------------------------------------


class ReferenceError(ValueError):
    """A document whose generated blocks cannot be rewritten (markers broken, unknown name)."""


def documents(root: pathlib.Path = REPO) -> list[pathlib.Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks(text: str) -> Iterator[str]:
    """The names of the generated blocks of `text`, in order."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("<!-- BEGIN GENERATED ") and stripped.endswith(" -->"):
            yield stripped[len("<!-- BEGIN GENERATED ") : -len(" -->")]


def render(text: str, where: str = "document") -> str:
    """`text` with every generated block filled in afresh."""
    out: list[str] = []
    lines = iter(text.splitlines(keepends=True))
    for line in lines:
        out.append(line)
        names = list(blocks(line))
        if not names:
            if line.strip().startswith("<!-- END GENERATED "):
                raise ReferenceError(f"{where}: {line.strip()} without its BEGIN")
            continue
        name = names[0]
        if name not in SECTIONS:
            raise ReferenceError(
                f"{where}: no generator for block {name!r} (known: {', '.join(SECTIONS)})"
            )
        end = END.format(name=name)
        for inner in lines:
            if inner.strip() == end:
                out.append("\n" + SECTIONS[name]().strip("\n") + "\n\n")
                out.append(inner)
                break
            if inner.strip().startswith("<!-- BEGIN GENERATED "):
                raise ReferenceError(f"{where}: block {name!r} has no {end} before the next")
        else:
            raise ReferenceError(f"{where}: block {name!r} has no {end}")
    return "".join(out)


def stale(root: pathlib.Path = REPO) -> list[str]:
    """What `make docs` would change: files whose generated blocks differ from the code, and
    sections that no document shows."""
    problems = []
    shown: set[str] = set()
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        shown.update(blocks(text))
        if render(text, str(path.relative_to(root))) != text:
            problems.append(str(path.relative_to(root)))
    problems += [f"no document shows the generated block {name!r}" for name in SECTIONS
                 if name not in shown]  # fmt: skip
    return problems


def write(root: pathlib.Path = REPO) -> list[str]:
    """Rewrite every generated block; returns the files changed."""
    changed = []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        fresh = render(text, str(path.relative_to(root)))
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
            changed.append(str(path.relative_to(root)))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coordinator.reference",
        description="Rewrite the generated parts of the documentation from the code.",
    )
    parser.add_argument("--check", action="store_true", help="only list what is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale()
            if problems:
                print("generated documentation is stale; run `make docs`:", *problems,
                      sep="\n  ")  # fmt: skip
                return 1
            print("generated documentation is fresh")
            return 0
        for name in write():
            print(f"rewrote {name}")
    except ReferenceError as exc:
        print(f"coordinator.reference: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
