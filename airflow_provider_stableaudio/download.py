"""Fetching a clip from its audio URL into storage: streamed, checked, whole or not at all.

No Airflow imports; ``requests`` is imported when a download runs, not with this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_stableaudio import storage
from airflow_provider_stableaudio.exceptions import StableAudioDownloadError

if TYPE_CHECKING:
    import requests

    from airflow_provider_stableaudio.storage import OutputPath

# 128 KiB: steady throughput whether memory is warm or cold (docs/performance.md), tiny RSS.
DOWNLOAD_CHUNK_BYTES = 128 * 1024
# The file is gone for good at these: another request cannot fetch it.
EXPIRED_STATUSES = frozenset({403, 404, 410})


def download_file(
    session: requests.Session,
    url: str,
    path: OutputPath,
    *,
    timeout: float,
    expected_size: int | None = None,
) -> tuple[str, int]:
    """Stream the file at ``url`` to ``path``; return ``(where it was written, bytes received)``.

    Chunks go to a temporary file beside ``path`` that is moved into place only once every byte
    arrived (checked against ``Content-Length`` and ``expected_size``); on any failure the
    temporary file is removed and nothing is left at ``path``. The file is never held whole in
    memory.

    :param session: the session to fetch with (it must carry no API key: the URL is a CDN's).
    :param url: the audio URL.
    :param path: a local path (its folder is created), a URI or an ``ObjectStoragePath``.
    :param timeout: seconds allowed to connect and between two chunks.
    :param expected_size: the ``file_size`` the API reported, if any.
    :raises StableAudioDownloadError: the file could not be fetched, written, or arrived incomplete.
    """
    import requests

    target = storage.prepare(path)
    location = storage.describe(path, target)
    received = 0
    try:
        with (
            storage.staged_write(target) as out,
            # identity: the byte counts below are of the file itself, never of a compressed body.
            session.get(
                url, stream=True, timeout=timeout, headers={"Accept-Encoding": "identity"}
            ) as response,
        ):
            if response.status_code != 200:
                expired = response.status_code in EXPIRED_STATUSES
                hint = " (the URL may have expired)" if expired else ""
                raise StableAudioDownloadError(
                    f"downloading {url} failed with HTTP {response.status_code}{hint}", url_expired=expired
                )
            for chunk in response.iter_content(chunk_size=DOWNLOAD_CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
            announced = response.headers.get("Content-Length")
            for what, size in (("Content-Length", announced), ("file_size", expected_size)):
                if size is not None and str(size) != str(received):
                    raise StableAudioDownloadError(
                        f"downloading {url} got {received} bytes but {what} says {size}: incomplete file"
                    )
    except requests.RequestException as exc:
        raise StableAudioDownloadError(f"downloading {url} failed after {received} bytes: {exc}") from exc
    except OSError as exc:
        raise StableAudioDownloadError(f"writing the audio to {location} failed: {exc}") from exc
    return location, received
