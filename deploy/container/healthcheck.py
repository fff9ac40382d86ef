"""The container's HEALTHCHECK: ask the node's gRPC health service (grpc.health.v1) whether it
serves, on the plaintext health-only port (`health_listen`), which needs no cluster certificate.

    python healthcheck.py [HOST:PORT]     default: $CHRONOTICK_HEALTH_ADDR or 127.0.0.1:7821

Exit 0 when the answer is SERVING, 1 otherwise (as `docker` expects), with one line saying why.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:7821"
TIMEOUT_S = 3.0


def main(argv: list[str]) -> int:
    address = argv[1] if len(argv) > 1 else os.environ.get("CHRONOTICK_HEALTH_ADDR", "")
    address = address or DEFAULT_ADDRESS
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            print(f"unhealthy: {address}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {address}: {status}", file=sys.stderr)
        return 1
    print(f"{address}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
