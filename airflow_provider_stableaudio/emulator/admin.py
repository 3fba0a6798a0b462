"""Admin routes under ``/_emulator/``: ledger, reset, run-time configuration, benchmark blob."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .api import read_json
from .envelope import error_response
from .faults import SETTING_NAMES, FaultConfig
from .ratelimit import RATE_LIMIT_NAMES, RateLimitConfig
from .state import STATE_KEY, EmulatorConfig
from .variants import VARIANT_NAMES, VariantConfig

if TYPE_CHECKING:
    from collections.abc import Callable

ADMIN_PREFIX = "/_emulator/"
BLOB_PATH = ADMIN_PREFIX + "blob"
BLOB_MAX_SIZE = 2 * 1024**3
# Byte i of every blob is i % 256; 1 MiB per write (a multiple of 256 keeps the pattern going).
_BLOB_CHUNK = bytes(range(256)) * 4096


async def get_ledger(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].ledger())


async def reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})


def config_json(config: EmulatorConfig) -> dict[str, Any]:
    # Report how many keys there are, never the keys themselves.
    return {
        "generation_seconds": config.generation_seconds,
        "generation_seconds_max": config.generation_seconds_max,
        "public_base_url": config.public_base_url,
        "api_key_count": len(config.api_keys),
        **config.faults.to_json(),
        **config.variants.to_json(),
        **config.rate_limit.to_json(),
    }


def parse_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError("must be a finite number >= 0")
    return float(value)


def parse_seconds_max(value: object) -> float | None:
    return None if value is None else parse_seconds(value)


def _parse_keys(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        raise ValueError("must be a list of non-empty strings")
    return frozenset(value)


def _parse_url(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("must be a string or null")
    return value or None


# One parser per run-time configurable field: add an entry to make another field settable.
_CONFIG_PARSERS: dict[str, Callable[[object], Any]] = {
    "generation_seconds": parse_seconds,
    "generation_seconds_max": parse_seconds_max,
    "api_keys": _parse_keys,
    "public_base_url": _parse_url,
}


_CLEARS = ("clear_faults", "clear_variants", "clear_rate_limit")


def _apply_config(body: dict[str, Any], state_config: EmulatorConfig) -> tuple[EmulatorConfig, bool]:
    """Return the configuration ``body`` asks for and whether the fault draws must be re-seeded.

    ``clear_faults: true`` first turns every fault off and lifts the rate limit, ``clear_variants: true``
    restores the default variants, ``clear_rate_limit: true`` lifts the rate limit; fault, variant and
    rate-limit settings in the same body then apply.
    """
    changes: dict[str, Any] = {}
    fault_changes: dict[str, Any] = {}
    variant_changes: dict[str, Any] = {}
    limit_changes: dict[str, Any] = {}
    clear, clear_variants, clear_limit = (body.get(name, False) for name in _CLEARS)
    for name, flag in zip(_CLEARS, (clear, clear_variants, clear_limit), strict=True):
        if not isinstance(flag, bool):
            raise ValueError(f"{name}: must be a boolean")
    for name, value in body.items():
        if name in SETTING_NAMES:
            fault_changes[name] = value
        elif name in VARIANT_NAMES:
            variant_changes[name] = value
        elif name in RATE_LIMIT_NAMES:
            limit_changes[name] = value
        elif name in _CONFIG_PARSERS:
            try:
                changes[name] = _CONFIG_PARSERS[name](value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        elif name not in _CLEARS:
            raise ValueError(f"Unrecognized key(s) in object: '{name}'")
    faults = replace(FaultConfig() if clear else state_config.faults, **fault_changes)
    variants = replace(VariantConfig() if clear_variants else state_config.variants, **variant_changes)
    limit = RateLimitConfig() if clear or clear_limit else state_config.rate_limit
    return replace(
        state_config, **changes, faults=faults, variants=variants, rate_limit=replace(limit, **limit_changes)
    ), clear or "seed" in fault_changes


async def config(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.method == "GET":
        return web.json_response(config_json(state.config))
    body, problem = await read_json(request)
    if problem or not isinstance(body, dict):
        return error_response(request, 400, problem or "Expected object")
    try:
        new, reseed = _apply_config(body, state.config)
    except ValueError as exc:
        return error_response(request, 400, str(exc))
    state.configure(new)
    if reseed:
        state.faults.reseed(new.faults.seed)
    return web.json_response(config_json(state.config))


async def blob(request: web.Request) -> web.StreamResponse:
    """Serve ``size`` bytes of a fixed pattern, streamed, for download benchmarks (never faulted)."""
    raw = request.query.get("size", "")
    if not (raw.isascii() and raw.isdigit()) or int(raw) > BLOB_MAX_SIZE:
        return error_response(request, 400, f"size: Expected an integer from 0 to {BLOB_MAX_SIZE}")
    size = int(raw)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    view = memoryview(_BLOB_CHUNK)
    try:
        for offset in range(0, size, len(view)):
            await response.write(view[: min(len(view), size - offset)])
        await response.write_eof()
    except ConnectionError:
        pass  # the benchmark stopped reading
    return response
