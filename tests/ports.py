"""A free loopback port, for the tests that start servers (API, Azurite, Redis, the storefront)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
