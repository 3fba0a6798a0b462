"""API variants: the answers the contract allows besides the emulator's defaults, one setting each.

The real API, its older documentation and the clients seen in the wild disagree on details that a
client must accept all of. Each is a setting with the same name everywhere: keyword arguments of
``EmulatorServer.set_variants(...)`` and fields of :class:`VariantConfig`, keys of
``POST /_emulator/config`` (JSON), and CLI flags with dashes (``create_status`` is ``--create-status``).

* ``create_status``: the HTTP status of a successful create, ``200`` (current schema, default) or
  ``201`` (older docs and observed clients).
* ``id_field``: the name of the generation id in create and poll bodies, ``"id"`` (default) or
  ``"generation_id"`` (older docs).
* ``pending_statuses``: the status a pending generation reports, one or two of ``queued``,
  ``generating`` (the schema's), ``waiting``, ``active``, ``processing`` (seen by real clients);
  the first for the first fifth of ``generation_seconds`` (and in the create answer), the second,
  if given, after. Default ``queued`` then ``generating``.
* ``failed_status``: the status of a failed generation, ``"error"`` (schema, default) or ``"failed"``.
* ``content_type``: the ``audio_file.content_type`` of a completed generation, also the download's
  ``Content-Type``: ``"audio/wav"`` (default) or ``"application/octet-stream"`` (what the real API
  reports).
* ``url_ttl_seconds``: audio URLs expire this many seconds after the poll that handed them out
  (the URL carries ``?expires=<unix time in milliseconds>``; later downloads get 403 "Request has
  expired", as from a CDN's signed URL; each poll hands out a fresh URL). Default ``null``: URLs
  never expire. ``0`` hands out URLs that are already expired.
* ``completed_status``: the status of a finished generation, ``"completed"`` (schema, default) or
  ``"complete"`` (the vendor's prose for ``stable-audio``).
* ``credits_per_step``: ``meta.usage.credits_used`` is this times ``steps`` (default ``252``: 25200
  at the default 100 steps). The schema's type is ``number``: a fraction such as ``0.125`` reports
  fractional credits (12.5 at 100 steps).
* ``audio_url``: a completed generation's ``audio_file`` is only ``{"url": <this>}``, the one field
  the schema requires, whatever it points at (``file:///etc/passwd``, a sign-in page): a client must
  not trust it. Default ``null``: the emulator's own file, with every field.

Stability's API (``stability.py``):

* ``stability_result_ttl``: seconds a Stable Audio 3 result stays fetchable after it completed,
  then ``GET /v2beta/audio/results/{id}`` answers 404 (default 86400, the contract's "about 24
  hours"; ``0``: gone as soon as it completes).
* ``stability_results_once``: a result is served once, a second ``GET`` answers 404 (default
  ``false``: served until it expires; the contract leaves this unconfirmed).
* ``stability_audio_headers``: audio answers carry ``finish-reason`` and ``seed`` headers (default
  ``true``, as documented; ``false`` checks that a client copes without them). ``x-request-id`` is
  sent either way.
* ``stability_sa3_access_denied``: the key's account lacks Stable Audio 3 (the document's feature flag
  ``allow-access-stable-audio-3-api``): every ``POST /v2beta/audio/stable-audio/{mode}`` with a
  valid key answers 403 ``permission_denied`` and creates nothing (default ``false``; the real
  status is unconfirmed). Stable Audio 2/2.5 and the results of existing generations are unaffected.

A ledger reset keeps the settings; ``EmulatorServer.clear_variants()`` or ``"clear_variants": true``
in the JSON restores the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PENDING_STATUSES = ("queued", "generating", "waiting", "active", "processing")
CREATE_STATUSES = (200, 201)
ID_FIELDS = ("id", "generation_id")
FAILED_STATUSES = ("error", "failed")
CONTENT_TYPES = ("audio/wav", "application/octet-stream")
COMPLETED_STATUSES = ("completed", "complete")


def _one_of(allowed: Sequence[Any]) -> Callable[[object], Any]:
    def parse(value: object) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise ValueError("must be one of " + ", ".join(map(str, allowed)))
        return value

    return parse


def _parse_pending(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 2:
        raise ValueError("must be a list of one or two statuses")
    statuses = tuple(str(status).strip() for status in value)
    if not set(statuses) <= set(PENDING_STATUSES):
        raise ValueError("may contain only " + ", ".join(PENDING_STATUSES))
    return statuses


def _parse_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _parse_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError("must be a finite number >= 0")
    return float(value)


def _parse_ttl(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError("must be a finite number >= 0 or null")
    return float(value)


def _parse_url(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("must be a string or null")
    return value


def _parse_credits(value: object) -> int | float:
    # Not made a float: the default's credits_used stays an integer, as the real API's examples are.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError("must be a finite number >= 0")
    return value


_PARSERS: dict[str, Callable[[object], Any]] = {
    "create_status": _one_of(CREATE_STATUSES),
    "id_field": _one_of(ID_FIELDS),
    "pending_statuses": _parse_pending,
    "failed_status": _one_of(FAILED_STATUSES),
    "content_type": _one_of(CONTENT_TYPES),
    "url_ttl_seconds": _parse_ttl,
    "completed_status": _one_of(COMPLETED_STATUSES),
    "credits_per_step": _parse_credits,
    "audio_url": _parse_url,
    "stability_result_ttl": _parse_seconds,
    "stability_results_once": _parse_bool,
    "stability_audio_headers": _parse_bool,
    "stability_sa3_access_denied": _parse_bool,
}
VARIANT_NAMES = frozenset(_PARSERS)


@dataclass(frozen=True, kw_only=True)
class VariantConfig:
    """Which of the API's allowed answers the emulator gives; see the module docstring.

    Values are validated on construction (and by ``dataclasses.replace``): a bad value raises
    ``ValueError`` naming the setting.
    """

    create_status: int = 200
    id_field: str = "id"
    pending_statuses: tuple[str, ...] = ("queued", "generating")
    failed_status: str = "error"
    content_type: str = "audio/wav"
    url_ttl_seconds: float | None = None
    completed_status: str = "completed"
    credits_per_step: int | float = 252
    audio_url: str | None = None
    stability_result_ttl: float = 86400.0
    stability_results_once: bool = False
    stability_audio_headers: bool = True
    stability_sa3_access_denied: bool = False

    def __post_init__(self) -> None:
        for item in fields(self):
            try:
                value = _PARSERS[item.name](getattr(self, item.name))
            except ValueError as exc:
                raise ValueError(f"{item.name}: {exc}") from None
            object.__setattr__(self, item.name, value)

    def pending_status(self, fraction_elapsed: float) -> str:
        """The status of a pending generation ``fraction_elapsed`` (0..1) of the way to completion."""
        return self.pending_statuses[0 if fraction_elapsed < 0.2 else -1]

    def to_json(self) -> dict[str, Any]:
        settings = {item.name: getattr(self, item.name) for item in fields(self)}
        settings["pending_statuses"] = list(self.pending_statuses)
        return settings


class VariantSettings(TypedDict, total=False):
    """Keyword arguments of ``EmulatorServer.set_variants`` (any subset)."""

    create_status: int
    id_field: str
    pending_statuses: Sequence[str] | str
    failed_status: str
    content_type: str
    url_ttl_seconds: float | None
    completed_status: str
    credits_per_step: int | float
    audio_url: str | None
    stability_result_ttl: float
    stability_results_once: bool
    stability_audio_headers: bool
    stability_sa3_access_denied: bool
