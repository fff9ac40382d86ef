"""A server name keeps the address it resolved to while that address answers."""

from __future__ import annotations

import time

import pytest

from chronotick.ntp import query
from chronotick.ntp.query import Resolver, ServerAddress, poll_server
from tests.conftest import free_udp_port
from tests.helpers.fake_ntp import FakeNtpServer, honest_reply


def test_the_address_is_kept_while_it_answers_and_looked_up_again_when_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []
    real = query.socket.getaddrinfo

    def counting(host: str, port: int, **kwargs: object) -> list[object]:
        lookups.append(host)
        return real(host, port, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(query.socket, "getaddrinfo", counting)
    resolver = Resolver()
    with FakeNtpServer(lambda r: [honest_reply(r)]) as server:
        address = ServerAddress.parse(server.address.replace("127.0.0.1", "localhost"))
        for _ in range(3):
            result = poll_server(address, time.time_ns, 1, 0.0, 0.5, resolver=resolver)
            assert result.sample is not None
        assert len(lookups) == 1  # three polls, one lookup
    dead = ServerAddress("localhost", free_udp_port())
    for _ in range(2):
        assert poll_server(dead, time.time_ns, 1, 0.0, 0.2, resolver=resolver).sample is None
    assert len(lookups) == 3  # no answer: looked up again at every poll
