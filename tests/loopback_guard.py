"""Refuse, before any packet is sent, every name lookup or connection that is not loopback.

Installed by the S3 tests (and inside the processes they start): botocore's credential chain would
ask the instance metadata service (169.254.169.254, link-local) and its default endpoints are
amazonaws.com names. Each refused attempt is recorded, so a test can assert there was none.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: Any) -> bool:
    if host is None:
        return True  # a wildcard lookup for a server to bind, not a destination
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a name: resolving it would ask DNS


class LoopbackGuard:
    def __init__(self) -> None:
        self.refused: list[str] = []
        self._saved: dict[str, Any] = {}

    def install(self) -> LoopbackGuard:
        guard = self
        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if not is_loopback(host):
                guard.refused.append(f"lookup {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, f"refused by the loopback guard: {host!r}")
            return real_getaddrinfo(host, *args, **kwargs)

        def checked(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
                guard.refused.append(f"connect {address!r}")
                raise ConnectionRefusedError(f"refused by the loopback guard: {address!r}")

        def connect(sock: socket.socket, address: Any) -> None:
            checked(sock, address)
            real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            checked(sock, address)
            return real_connect_ex(sock, address)

        self._saved = {
            "getaddrinfo": real_getaddrinfo,
            "connect": real_connect,
            "connect_ex": real_connect_ex,
        }
        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        socket.getaddrinfo = self._saved["getaddrinfo"]
        socket.socket.connect = self._saved["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = self._saved["connect_ex"]  # type: ignore[method-assign]
