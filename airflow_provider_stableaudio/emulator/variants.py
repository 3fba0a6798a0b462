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

A ledger reset keeps the settings; ``EmulatorServer.clear_variants()`` or ``"clear_variants": true``
in the JSON restores the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

PENDING_STATUSES = ("queued", "generating", "waiting", "active", "processing")
_CREATE_STATUSES = (200, 201)
_ID_FIELDS = ("id", "generation_id")
_FAILED_STATUSES = ("error", "failed")
_CONTENT_TYPES = ("audio/wav", "application/octet-stream")


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


def _parse_ttl(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError("must be a finite number >= 0 or null")
    return float(value)


_PARSERS: dict[str, Callable[[object], Any]] = {
    "create_status": _one_of(_CREATE_STATUSES),
    "id_field": _one_of(_ID_FIELDS),
    "pending_statuses": _parse_pending,
    "failed_status": _one_of(_FAILED_STATUSES),
    "content_type": _one_of(_CONTENT_TYPES),
    "url_ttl_seconds": _parse_ttl,
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


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting: ``--create-status 201``, ``--pending-statuses waiting active``, ..."""
    defaults = VariantConfig()
    group = parser.add_argument_group("API variants (see the emulator docs)")
    group.add_argument("--create-status", type=int, default=defaults.create_status, choices=_CREATE_STATUSES)
    group.add_argument("--id-field", default=defaults.id_field, choices=_ID_FIELDS)
    group.add_argument(
        "--pending-statuses",
        nargs="+",
        default=list(defaults.pending_statuses),
        metavar="STATUS",
        help="one or two of " + ", ".join(PENDING_STATUSES) + " (default: queued generating)",
    )
    group.add_argument("--failed-status", default=defaults.failed_status, choices=_FAILED_STATUSES)
    group.add_argument("--content-type", default=defaults.content_type, choices=_CONTENT_TYPES)
    group.add_argument(
        "--url-ttl-seconds", type=float, default=None, metavar="S", help="audio URLs expire (default: never)"
    )


def from_cli(args: argparse.Namespace) -> VariantConfig:
    """Return the settings given by :func:`add_cli_arguments`' flags; raise ValueError if invalid."""
    settings: dict[str, Any] = {name: getattr(args, name) for name in VARIANT_NAMES}
    settings["pending_statuses"] = [s for value in args.pending_statuses for s in value.split(",")]
    return VariantConfig(**settings)
