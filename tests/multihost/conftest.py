"""Fixtures for multi-host tests: clusters of network namespaces (see netns.py).

`cluster_factory(n_hosts, reference=..., faketime=...)` builds a started `Cluster`; every
cluster a test built is torn down after it, pass or fail. When a test fails, the tail of every
process log of its clusters is added to the failure report (section "multihost logs"), taken
before the teardown stops the processes.

Prerequisites (root, iproute2, and chronyd / libfaketime when asked for) skip on a developer
machine and fail in CI, through tests/conftest.py's helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from tests.conftest import libfaketime_path, require_binary, require_root
from tests.multihost.netns import Cluster

_CLUSTERS = pytest.StashKey[list[Cluster]]()

ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def cluster_factory(request: pytest.FixtureRequest) -> Iterator[ClusterFactory]:
    """Build clusters: `cluster_factory(3, reference=True, faketime=True)`.

    `faketime=True` checks libfaketime up front (skip/fail with the reason) and hands its path
    to the cluster; further keyword arguments go to `Cluster`.
    """
    require_root()
    require_binary("ip")
    clusters: list[Cluster] = []
    request.node.stash[_CLUSTERS] = clusters

    def make(
        n_hosts: int = 2, *, reference: bool = False, faketime: bool = False, **kwargs: Any
    ) -> Cluster:
        if reference:
            require_binary("chronyd")
        if faketime:
            kwargs.setdefault("libfaketime", libfaketime_path())
        cluster = Cluster(n_hosts, reference=reference, **kwargs)
        clusters.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for cluster in reversed(clusters):
            try:
                cluster.close()
            except BaseException as exc:  # close the others anyway
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def cluster(cluster_factory: ClusterFactory) -> Cluster:
    """Two hosts, no reference."""
    return cluster_factory(2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for cluster in item.stash.get(_CLUSTERS, []):
            try:
                logs = cluster.dump_logs()
            except Exception as exc:
                logs = f"(could not read logs: {exc!r})"
            report.sections.append((f"multihost logs {cluster.prefix}", logs))
