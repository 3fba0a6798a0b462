"""The command line's flags for the fault, variant and rate-limit settings: one flag each, dashes for
underscores."""

from __future__ import annotations

import argparse
from typing import Any

from .faults import RATE_NAMES, SETTING_NAMES, FaultConfig
from .ratelimit import RATE_LIMIT_NAMES, RateLimitConfig
from .variants import (
    COMPLETED_STATUSES,
    CONTENT_TYPES,
    CREATE_STATUSES,
    FAILED_STATUSES,
    ID_FIELDS,
    PENDING_STATUSES,
    VARIANT_NAMES,
    VariantConfig,
)


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting: ``--rate-429``, ..., ``--fault-methods GET POST``."""
    group = parser.add_argument_group("fault injection (off by default)")
    for name in RATE_NAMES:
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, type=float, default=0.0, metavar="P", help="probability 0..1")
    group.add_argument(
        "--retry-after",
        type=lambda text: None if text == "none" else int(text),
        default=1,
        metavar="S",
        help="Retry-After of a 429, or 'none' to send none, as Stability AI (default: %(default)s)",
    )
    group.add_argument(
        "--slow-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="delay of a slow fault (default: %(default)s)",
    )
    group.add_argument("--seed", type=int, default=None, help="seed of the fault draws (default: unseeded)")
    group.add_argument(
        "--fault-methods",
        nargs="+",
        default=["GET", "POST"],
        metavar="METHOD",
        help="API methods that may be faulted (default: GET POST)",
    )


def faults_from_cli(args: argparse.Namespace) -> FaultConfig:
    """Return the settings given by :func:`add_fault_arguments`' flags; raise ValueError if invalid."""
    methods = [m for value in args.fault_methods for m in value.split(",")]
    settings: dict[str, Any] = {name: getattr(args, name) for name in SETTING_NAMES}
    return FaultConfig(**{**settings, "fault_methods": methods})


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting: ``--create-status 201``, ``--pending-statuses waiting active``, ..."""
    defaults = VariantConfig()
    group = parser.add_argument_group("API variants (see the emulator docs)")
    group.add_argument("--create-status", type=int, default=defaults.create_status, choices=CREATE_STATUSES)
    group.add_argument("--id-field", default=defaults.id_field, choices=ID_FIELDS)
    group.add_argument(
        "--pending-statuses",
        nargs="+",
        default=list(defaults.pending_statuses),
        metavar="STATUS",
        help="one or two of " + ", ".join(PENDING_STATUSES) + " (default: queued generating)",
    )
    group.add_argument("--failed-status", default=defaults.failed_status, choices=FAILED_STATUSES)
    group.add_argument("--content-type", default=defaults.content_type, choices=CONTENT_TYPES)
    group.add_argument(
        "--url-ttl-seconds", type=float, default=None, metavar="S", help="audio URLs expire (default: never)"
    )
    group.add_argument("--completed-status", default=defaults.completed_status, choices=COMPLETED_STATUSES)
    group.add_argument(
        "--credits-per-step",
        type=number,
        default=defaults.credits_per_step,
        metavar="N",
        help="credits_used is N times steps; may be fractional (default: %(default)s)",
    )
    group.add_argument(
        "--audio-url",
        default=None,
        metavar="URL",
        help="completed generations report only this audio URL (default: the emulator's own file)",
    )
    group.add_argument(
        "--stability-result-ttl",
        type=float,
        default=defaults.stability_result_ttl,
        metavar="S",
        help="Stable Audio 3 results expire this long after completion (default: %(default)s)",
    )
    group.add_argument(
        "--stability-results-once", action="store_true", help="serve each Stable Audio 3 result only once"
    )
    group.add_argument(
        "--no-stability-audio-headers",
        dest="stability_audio_headers",
        action="store_false",
        help="omit the finish-reason and seed headers of Stability audio answers",
    )
    group.add_argument(
        "--stability-sa3-access-denied",
        action="store_true",
        help="refuse every Stable Audio 3 submit with 403 permission_denied (an account without access)",
    )


def number(text: str) -> int | float:
    """A whole number stays an ``int`` (``252``), anything else is a ``float`` (``0.125``); the name is
    argparse's word for a bad value."""
    return int(text) if text.isascii() and text.isdigit() else float(text)


def variants_from_cli(args: argparse.Namespace) -> VariantConfig:
    """Return the settings given by :func:`add_variant_arguments`' flags; raise ValueError if invalid."""
    settings: dict[str, Any] = {name: getattr(args, name) for name in VARIANT_NAMES}
    settings["pending_statuses"] = [s for value in args.pending_statuses for s in value.split(",")]
    return VariantConfig(**settings)


def add_rate_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting: ``--limit-requests 150 --limit-window-seconds 10 ...``."""
    defaults = RateLimitConfig()
    group = parser.add_argument_group("the key's rate limit (off by default; see the emulator docs)")
    group.add_argument(
        "--limit-requests",
        type=int,
        default=None,
        metavar="N",
        help="requests a key may make per window; 150 alone is Stability's documented limit (default: none)",
    )
    group.add_argument(
        "--limit-window-seconds",
        type=float,
        default=defaults.limit_window_seconds,
        metavar="S",
        help="the sliding window's length (default: %(default)s)",
    )
    group.add_argument(
        "--limit-lockout-seconds",
        type=float,
        default=defaults.limit_lockout_seconds,
        metavar="S",
        help="the key is refused this long after going over the limit; 0: no lockout (default: %(default)s)",
    )
    group.add_argument(
        "--limit-retry-after",
        action=argparse.BooleanOptionalAction,
        default=defaults.limit_retry_after,
        help="send Retry-After with the limit's 429 (default: not sent, as Stability documents)",
    )
    group.add_argument(
        "--limit-lockout-extends",
        action=argparse.BooleanOptionalAction,
        default=defaults.limit_lockout_extends,
        help="a request during the lockout starts it again (default: a fixed lockout)",
    )


def rate_limit_from_cli(args: argparse.Namespace) -> RateLimitConfig:
    """Return the settings given by :func:`add_rate_limit_arguments`' flags; raise ValueError if invalid."""
    return RateLimitConfig(**{name: getattr(args, name) for name in RATE_LIMIT_NAMES})
