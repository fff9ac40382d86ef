"""The generated documentation (coordinator/reference.py): fresh, complete, and true to the code.

The configuration reference claims, for every key: a type, a default, the flag that sets it,
what it means, and the limits the configuration enforces. Each claim is checked against the
code itself: the flags through the programs' own parsers, the limits by giving a value just
outside each one and expecting the configuration to refuse it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from chronotick.daemon import cli as daemon_cli
from chronotick.daemon.config import ConfigError, DaemonConfig, build_config
from chronotick.ntp.poll import PollPolicy
from coordinator import cli as node_cli
from coordinator import reference
from coordinator.config import NodeConfig, build_node_config

NAMES = ("red", "green")


def test_generated_docs_are_fresh() -> None:
    assert reference.stale() == []  # `make docs` rewrites them


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.name != "daemon"]


@pytest.mark.parametrize(
    ("cls", "rows"),
    [(DaemonConfig, reference.daemon_keys), (NodeConfig, reference.node_keys)],
    ids=["daemon", "node"],
)
def test_every_key_has_a_row_with_its_default_and_a_meaning(cls: type, rows: Any) -> None:
    by_key = {r.key: r for r in rows()}
    assert list(by_key) == [f.name for f in _fields(cls)]
    for field in _fields(cls):
        row = by_key[field.name]
        assert row.meaning, f"{field.name}: no meaning (add a #: comment or a MEANINGS entry)"
        if isinstance(field.default, int | float) and not isinstance(field.default, bool):
            assert row.default == f"`{field.default!r}`"
    rendered = reference.config_reference()
    for field in _fields(cls):
        assert f"| `{field.name}` |" in rendered


def test_meanings_name_existing_keys() -> None:
    for cls, key in reference.MEANINGS:
        assert key in {f.name for f in _fields(cls)}, (cls.__name__, key)


def _sample(action: argparse.Action) -> list[str]:
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(next(iter(action.choices)))]
    return ["7"]


@pytest.mark.parametrize("which", ["daemon", "node"])
def test_each_flag_in_the_reference_sets_its_key(which: str) -> None:
    rows = reference.daemon_keys() if which == "daemon" else reference.node_keys()
    parser = daemon_cli.parser() if which == "daemon" else reference.start_parser()
    options = {a.option_strings[-1]: a for a in parser._actions if a.option_strings}
    flagged = [r for r in rows if r.flag != "(file only)"]
    assert len(flagged) >= 10
    for row in flagged:
        option = row.flag.split("`")[1].split()[0]
        argv = [option, *_sample(options[option])]
        if which == "daemon":
            args = daemon_cli.parser().parse_args(argv)
        else:
            args = node_cli.parser().parse_args(["start", *argv])
        value = getattr(args, row.key)
        assert value is not None, f"{option} does not set {row.key}"
        if "(sets false)" in row.flag:
            assert value is False
        if "(sets true)" in row.flag:
            assert value is True


def test_every_option_of_the_programs_is_a_key() -> None:
    """An option that sets no key would be missing from the reference."""
    daemon_keys = {f.name for f in _fields(DaemonConfig)}
    node_keys = {f.name for f in _fields(NodeConfig)} | daemon_keys
    assert set(reference.flags(daemon_cli.parser())) <= daemon_keys
    assert set(reference.flags(reference.start_parser())) <= node_keys


def _near(bound: reference.Bound, field_type: str, defaults: dict[str, Any]) -> tuple[Any, Any]:
    """(a value that breaks `bound` by a little, the nearest value that keeps it)."""
    if bound.op == "in":
        assert isinstance(bound.value, tuple)
        return "no-such-value", bound.value[-1]
    limit = defaults[bound.value] if isinstance(bound.value, str) else bound.value
    assert isinstance(limit, int | float)
    step = 1 if field_type == "int" else max(abs(limit) * 0.01, 1e-6)
    outside, inside = {
        ">=": (limit - step, limit),
        ">": (limit, limit + step),
        "<=": (limit + step, limit),
        "<": (limit, limit - step),
    }[bound.op]
    cast = int if field_type == "int" else float
    return cast(outside), cast(inside)


def _breaks(bound: reference.Bound, value: Any, defaults: dict[str, Any]) -> bool:
    if bound.op == "in":
        assert isinstance(bound.value, tuple)
        return value not in bound.value
    limit = defaults[bound.value] if isinstance(bound.value, str) else bound.value
    return not {">=": value >= limit, ">": value > limit, "<=": value <= limit,
                "<": value < limit}[bound.op]  # fmt: skip


def _build(cls: type, key: str, value: Any) -> None:
    if cls is DaemonConfig:
        build_config({key: value}, {})
    else:
        build_node_config({"node_id": "n1", key: value}, {})


@pytest.mark.parametrize(
    ("cls", "sources"),
    [(DaemonConfig, (DaemonConfig, PollPolicy)), (NodeConfig, (NodeConfig,))],
    ids=["daemon", "node"],
)
def test_every_limit_in_the_reference_is_enforced_where_it_says(
    cls: type, sources: tuple[type, ...]
) -> None:
    types = {f.name: str(f.type) for f in _fields(cls)}
    defaults = {f.name: f.default for f in _fields(cls)}
    limits = [b for s in sources for b in reference.bounds(s) if b.key in types]
    assert len(limits) >= 6
    for bound in limits:
        if isinstance(bound.value, str) and bound.value not in types:
            continue  # a limit against a field that is no key is not in the reference
        outside, inside = _near(bound, types[bound.key], defaults)
        with pytest.raises(ConfigError, match=bound.key):
            _build(cls, bound.key, outside)
        try:  # the limit is no stricter than the reference says...
            _build(cls, bound.key, inside)
        except ConfigError as exc:  # ...unless another limit the reference lists refuses it
            others = [b for b in limits if b.key == bound.key and b != bound]
            assert not str(exc).startswith(bound.key) or any(
                _breaks(b, inside, defaults) for b in others
            ), (bound, inside, exc)


class _Shapes:
    """The check shapes `reference.bounds` reads (never instantiated: only its source is)."""

    a: float
    b: int
    c: float
    d: float
    e: str
    f: float

    def __post_init__(self) -> None:
        _check_range("a", self.a, 0.5, 2 * 60)
        if not 3 <= self.b <= 4:
            raise ValueError("b")
        if self.c <= 0 or self.c > 60:
            raise ValueError("c")
        if self.d <= self.c:
            raise ValueError("d")
        if self.e not in NAMES:
            raise ValueError("e")
        if math.isnan(self.f) or self.f * self.a < 2:  # not a shape it reads
            raise ValueError("f")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    raise AssertionError("never called")


def test_bounds_reads_the_shapes_the_code_uses() -> None:
    found = {(b.key, b.op, b.value) for b in reference.bounds(_Shapes)}
    assert found == {
        ("a", ">=", 0.5),
        ("a", "<=", 120),
        ("b", ">=", 3),
        ("b", "<=", 4),
        ("c", ">", 0),
        ("c", "<=", 60),
        ("d", ">", "c"),
        ("e", "in", NAMES),
    }
    keys = {"a", "b", "c", "d", "e", "f"}
    text = {k: reference.valid_text(k, reference.bounds(_Shapes), keys) for k in keys}
    assert text == {
        "a": "0.5 to 120",
        "b": "3 to 4",
        "c": "> 0, ≤ 60",
        "d": "> `c`",
        "e": "one of `red`, `green`",
        "f": "",
    }


def test_render_fills_blocks_and_refuses_broken_markers() -> None:
    begin, end = "<!-- BEGIN GENERATED config -->", "<!-- END GENERATED config -->"
    page = f"# Title\n\n{begin}\nold text\n{end}\n\nafter\n"
    fresh = reference.render(page)
    assert "old text" not in fresh and "| `min_poll_s` |" in fresh
    assert fresh.startswith(f"# Title\n\n{begin}\n") and fresh.endswith(f"{end}\n\nafter\n")
    assert reference.render(fresh) == fresh
    for broken in (
        f"{begin}\nno end\n",
        f"{end}\n",
        "<!-- BEGIN GENERATED nonesuch -->\n<!-- END GENERATED nonesuch -->\n",
        f"{begin}\n<!-- BEGIN GENERATED metrics -->\n{end}\n",
    ):
        with pytest.raises(reference.ReferenceError):
            reference.render(broken)


def test_stale_names_the_page_and_the_missing_block(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# readme\n")
    page = tmp_path / "docs" / "ops.md"
    page.write_text("<!-- BEGIN GENERATED config -->\nold\n<!-- END GENERATED config -->\n")
    assert reference.stale(tmp_path) == [
        "docs/ops.md",
        "no document shows the generated block 'metrics'",
    ]
    assert reference.write(tmp_path) == ["docs/ops.md"]
    assert reference.stale(tmp_path) == ["no document shows the generated block 'metrics'"]
