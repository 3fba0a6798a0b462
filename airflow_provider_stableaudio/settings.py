"""How to reach the API, read from an Airflow connection's fields. No Airflow imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_stableaudio.exceptions import StableAudioConfigError
from airflow_provider_stableaudio.services import AIMLAPI, SERVICES, Service

DEFAULT_BASE_URL = SERVICES[AIMLAPI].default_base_url
DEFAULT_REQUEST_TIMEOUT = 30.0
# The most bytes a download reads when the API reports no size (extra ``max_download_bytes``): far
# above any clip (380 s of 48 kHz stereo float WAV is 146 MB), far below what would fill a disk.
DEFAULT_MAX_DOWNLOAD_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class ApiSettings:
    """Where and how to call the API.

    :param base_url: scheme, host and optional port, no trailing slash.
    :param api_key: the Bearer token; never printed (``repr`` hides it).
    :param request_timeout: seconds allowed for one API call.
    :param results_served_once: the service serves a finished result once only (extra
        ``results_served_once``; Stability AI, unconfirmed): the poll that finds it ready stores it.
    :param max_download_bytes: the most bytes a download reads when the API reports no
        ``file_size`` (extra ``max_download_bytes``, default 4 GiB).
    :param max_requests_per_second: the most requests per second this machine's processes send with
        the key together (extra ``max_requests_per_second``); ``None``: the service's default.
    """

    base_url: str
    api_key: str = field(repr=False)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    results_served_once: bool = False
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    max_requests_per_second: float | None = None


def normalize_base_url(
    host: str | None, port: int | None = None, *, conn_id: str, default: str = DEFAULT_BASE_URL
) -> str:
    """The base URL for a connection's host field: https when no scheme is given, ``default`` when empty."""
    raw = (host or "").strip()
    if not raw:
        return default
    url = raw if "://" in raw else f"https://{raw}"
    parts = urlsplit(url)
    try:
        parsed_port = parts.port
    except ValueError:
        parsed_port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.hostname in ("http", "https")  # a scheme missing its ':' or '//'
        or "//" in parts.path
        or parts.netloc.endswith(":")  # "htp:/host" read as host "htp" with an empty port
        or parsed_port == -1
        or parts.query
        or parts.fragment
        or " " in raw
    ):
        raise StableAudioConfigError(
            f"connection {conn_id!r} has a malformed Base URL {raw!r}: "
            f"expected http(s)://host[:port], e.g. {default}"
        )
    base = url.rstrip("/")
    if port and parsed_port is None:
        base = f"{parts.scheme}://{parts.netloc}:{port}{parts.path.rstrip('/')}"
    return base


def settings_from_connection(
    *,
    conn_id: str,
    host: str | None,
    port: int | None,
    password: str | None,
    extra: dict[str, Any],
    service: Service = SERVICES[AIMLAPI],
) -> ApiSettings:
    """Validate a connection's fields into :class:`ApiSettings`.

    :param service: the service the connection reaches (its default Base URL, its key's name).

    :raises StableAudioConfigError: no API key, a malformed Base URL or a bad ``timeout``,
        ``results_served_once``, ``max_download_bytes`` or ``max_requests_per_second`` extra.
    """
    if not password or not password.strip():
        raise StableAudioConfigError(
            f"connection {conn_id!r} has no API key: "
            f"put the {service.key_name} in its password (API Key) field"
        )
    timeout = extra.get("timeout", DEFAULT_REQUEST_TIMEOUT)
    if timeout in (None, ""):
        timeout = DEFAULT_REQUEST_TIMEOUT
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        timeout = -1.0
    if not timeout > 0:
        raise StableAudioConfigError(
            f"connection {conn_id!r} has an invalid 'timeout' extra {extra.get('timeout')!r}: "
            "expected a number of seconds greater than 0"
        )
    served_once = extra.get("results_served_once")
    # The UI's form stores an unticked box as null.
    if served_once is None:
        served_once = False
    if isinstance(served_once, str) and served_once.strip().lower() in ("true", "false", ""):
        served_once = served_once.strip().lower() == "true"
    if not isinstance(served_once, bool):
        raise StableAudioConfigError(
            f"connection {conn_id!r} has an invalid 'results_served_once' extra {served_once!r}: "
            "expected true or false"
        )
    return ApiSettings(
        base_url=normalize_base_url(host, port, conn_id=conn_id, default=service.default_base_url),
        api_key=password.strip(),
        request_timeout=timeout,
        results_served_once=served_once,
        max_download_bytes=_max_download_bytes(extra.get("max_download_bytes"), conn_id=conn_id),
        max_requests_per_second=_max_requests_per_second(
            extra.get("max_requests_per_second"), conn_id=conn_id
        ),
    )


def _max_requests_per_second(value: Any, *, conn_id: str) -> float | None:
    """The ``max_requests_per_second`` extra: a number above 0; unset (or null) is the service's default."""
    if value is None or value == "":
        return None
    try:
        rate = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        rate = -1.0
    if isinstance(value, bool) or not (0 < rate < float("inf")):
        raise StableAudioConfigError(
            f"connection {conn_id!r} has an invalid 'max_requests_per_second' extra {value!r}: "
            "expected a number of requests per second greater than 0 (such as 14, or 0.5)"
        )
    return rate


def _max_download_bytes(value: Any, *, conn_id: str) -> int:
    """The ``max_download_bytes`` extra: a whole number of bytes above 0; unset (or null) is the default."""
    if value is None or value == "":
        return DEFAULT_MAX_DOWNLOAD_BYTES
    number = value.strip() if isinstance(value, str) else value
    if isinstance(number, str) and number.isascii() and number.isdigit():
        number = int(number)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise StableAudioConfigError(
            f"connection {conn_id!r} has an invalid 'max_download_bytes' extra {value!r}: "
            "expected a whole number of bytes greater than 0"
        )
    return number
