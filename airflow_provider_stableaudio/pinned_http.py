"""A ``requests`` transport that connects to addresses checked beforehand, never to a new lookup.

Checking a host's addresses and then letting ``requests`` resolve the name again leaves a gap: the
name may resolve to another address the second time (DNS rebinding), one that was never checked.
:class:`PinnedAdapter` closes it: the TCP connection goes to the checked addresses, in order, while
everything above TCP keeps the URL's name (the ``Host`` header, TLS SNI and the certificate check).
Imported only when a download runs: it imports ``requests`` and ``urllib3``.
"""

from __future__ import annotations

from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError


class PinnedAdapter(HTTPAdapter):
    """Sends every request to ``addresses`` (the checked addresses of the URL's host).

    One adapter serves one host; it holds its own connection pool, closed with :meth:`close`.
    """

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = tuple(addresses)
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _pinned_pool(HTTPConnectionPool, self._addresses),
            "https": _pinned_pool(HTTPSConnectionPool, self._addresses),
        }


def _pinned_pool(pool: type[HTTPConnectionPool], addresses: tuple[str, ...]) -> type[HTTPConnectionPool]:
    base: Any = pool.ConnectionCls

    class PinnedConnection(base):  # type: ignore[misc,valid-type]
        _dns_host: str

        def _new_conn(self) -> Any:
            # urllib3 connects to _dns_host and takes the Host header, SNI and the certificate's
            # name from it too: it holds the checked address only while the socket is opened.
            name = self._dns_host
            error: Exception | None = None
            try:
                for address in addresses:
                    self._dns_host = address
                    try:
                        return super()._new_conn()
                    except (NewConnectionError, ConnectTimeoutError) as failed:
                        error = failed
            finally:
                self._dns_host = name
            raise error or NewConnectionError(self, "no address to connect to")

    return type(f"Pinned{pool.__name__}", (pool,), {"ConnectionCls": PinnedConnection})
