"""Act at the same instant on several hosts: the program to copy for distributed work.

Each host runs a ChronoTick node (`chronotick-node start ...`, or `chronotick-node demo` for a
whole cluster on one machine). This program attaches to the node of its own host, asks it to
agree with its peers on instants a few seconds ahead, waits for them on the host's corrected
clock, and prints what every node reports: when it ran, relative to the target, and the error
bound it had then.

    python examples/distributed_sync_example.py --node-id d1 --scenario all \\
        --connect 127.0.0.1:7820

The scenarios (see coordinator/scenarios.py):
  simple    one action 5 s ahead, every node within ±1 ms
  periodic  five actions 2 s apart, each within ±1 ms
  write     a replicated write that every replica applies at one timestamp (±0.5 ms)

Exit status: 0 when every scenario held its tolerance, 1 when one did not or the node could
not be asked, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from coordinator import DistributedSyncCoordinator, scenarios
from coordinator.sync import SyncError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the ChronoTick sync scenarios through the node of this host."
    )
    parser.add_argument("--node-id", required=True, help="the node's id (checked on connect)")
    parser.add_argument(
        "--scenario", choices=[*scenarios.NAMES, "all"], default="simple", help="default simple"
    )
    parser.add_argument(
        "--connect", default="127.0.0.1:7820", metavar="HOST:PORT", help="the node's address"
    )
    args = parser.parse_args(argv)
    names = scenarios.NAMES if args.scenario == "all" else (args.scenario,)

    try:
        # 1. Attach to the local node. It answers with its id, which must be the one we
        #    expect: talking to the wrong node would schedule actions on the wrong cluster.
        with DistributedSyncCoordinator(node_id=args.node_id, connect=args.connect) as sync:
            all_ok = True
            for name in names:
                # 2. Each scenario proposes instants to every peer the node knows. A peer
                #    votes yes only if its error bound at the target is within the tolerance;
                #    if one says no, nobody acts and the reasons are in the result.
                # 3. The node and its peers wait for the target on their own corrected clocks,
                #    act, and report when they did; `run` waits for it too, then gathers the
                #    reports.
                result = scenarios.run(sync, name)
                # 4. Print each node's error against the target and the verdict.
                print(scenarios.describe(result))
                print()
                all_ok = all_ok and result.within_tolerance
    except SyncError as exc:
        # Typically: no node listens there ("failed to connect"), or another node does.
        print(
            f"cannot use the ChronoTick node at {args.connect}: {exc}\n"
            "is `chronotick-node start` (or `chronotick-node demo`) running there?",
            file=sys.stderr,
        )
        return 1
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
