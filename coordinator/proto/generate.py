"""Regenerate the Python code of protos/ (`make protos`), and say whether the checked-in copy
is fresh (CI runs `python -m coordinator.proto.generate --check`).

The protos keep their wire package `chronotick.v1`; protoc is told that the directory protos/
stands for `coordinator/proto`, so the generated modules import each other as
`coordinator.proto.chronotick.v1.*` and live inside this package.
"""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import sys
import tempfile

from grpc_tools import protoc

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
VIRTUAL_ROOT = "coordinator/proto"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out_root: pathlib.Path) -> None:
    """Write `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` under `out_root/coordinator/proto`."""
    includes = [f"-I{VIRTUAL_ROOT}={PROTOS}", f"-I{protoc_include()}"]
    for proto in proto_files():
        virtual = f"{VIRTUAL_ROOT}/{proto.relative_to(PROTOS).as_posix()}"
        args = ["protoc", *includes, f"--python_out={out_root}", f"--pyi_out={out_root}",
                f"--grpc_python_out={out_root}", virtual]  # fmt: skip
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")


def protoc_include() -> str:
    """Where grpc_tools keeps the well-known types (google/protobuf/*.proto)."""
    import grpc_tools

    return str(pathlib.Path(grpc_tools.__file__).parent / "_proto")


def generated_files(root: pathlib.Path) -> list[pathlib.Path]:
    base = root / VIRTUAL_ROOT
    names = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")  # not the interpreter's __pycache__
    return sorted(p.relative_to(base) for pattern in names for p in base.rglob(pattern))


def stale_files() -> list[str]:
    """Generated files that differ from what protoc makes now, or are missing, or left over."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = pathlib.Path(tmp)
        generate(fresh_root)
        fresh = set(generated_files(fresh_root))
        current = set(generated_files(REPO))
        stale = [str(p) for p in sorted(fresh ^ current)]
        for rel in sorted(fresh & current):
            a = fresh_root / VIRTUAL_ROOT / rel
            b = REPO / VIRTUAL_ROOT / rel
            if not filecmp.cmp(a, b, shallow=False):
                stale.append(str(rel))
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("generated code is stale; run `make protos`:", *stale, sep="\n  ")
            return 1
        print("generated code is fresh")
        return 0
    generate(REPO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
