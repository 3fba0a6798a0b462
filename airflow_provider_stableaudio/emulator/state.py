"""The emulator's configuration and state: generations, the ledger, faults and the WAV cache."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from .audio import synthesize_wav
from .envelope import now_iso
from .faults import FAULT_KINDS, FaultConfig, FaultInjector
from .ratelimit import KeyLimiter, RateLimitConfig
from .stability_state import StabilityStore
from .variants import VariantConfig

MODEL = "stable-audio"
ERROR_MARKER = "[emulator:error]"
_WAV_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """Behaviour of the emulator.

    :param generation_seconds: time from creation until a generation is completed; with
        ``generation_seconds_max``, the shortest such time.
    :param generation_seconds_max: when set, each generation takes its own time, drawn uniformly from
        ``generation_seconds`` to this (see :func:`generation_draw`); default: every one the same.
    :param api_keys: accepted Bearer keys; empty accepts any non-empty key.
    :param public_base_url: base of the audio URLs; default: derived from the request's Host.
    :param faults: fault injection settings; default: none.
    :param variants: which of the API's allowed answers to give (:mod:`.variants`); default: the schema's.
    :param rate_limit: the key's rate limit (:mod:`.ratelimit`); default: none.
    """

    generation_seconds: float = 3.0
    generation_seconds_max: float | None = None
    api_keys: frozenset[str] = frozenset()
    public_base_url: str | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    variants: VariantConfig = field(default_factory=VariantConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)

    def __post_init__(self) -> None:
        upper = self.generation_seconds_max
        if upper is not None and not upper >= self.generation_seconds:
            raise ValueError(
                f"generation_seconds_max: must be >= generation_seconds ({self.generation_seconds:g}), "
                f"got {upper:g}"
            )

    def generation_time(self, draw: float) -> float:
        """Seconds from creation to completion of the generation whose draw is ``draw`` (in [0, 1))."""
        lower, upper = self.generation_seconds, self.generation_seconds_max
        return lower if upper is None else lower + (upper - lower) * draw


def generation_draw(index: int) -> float:
    """Where the ``index``-th generation since the last reset (0-based, both services counted) falls
    between ``generation_seconds`` and ``generation_seconds_max``: a number in [0, 1).

    A hash of the index, uniform and the same on every run: a benchmark that resets the emulator and
    submits N generations meets the same N times each run (whichever order concurrent submits land in).
    """
    digest = hashlib.sha256(f"stableaudio-emulator-generation-time:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(kw_only=True)
class Generation:
    id: str
    file_name: str
    prompt: str
    seconds_total: int
    seconds_start: int | None
    steps: int
    created_at: str
    created: float  # time.monotonic() at creation
    draw: float = 0.0  # generation_draw(): where its time lies in the configured range
    forced_error: bool = False  # a generation_error fault
    terminal: str | None = None  # latched so a later config change cannot undo completion
    polls: int = 0
    downloads: int = 0
    complete_downloads: int = 0
    bytes_served: int = 0
    sha256: str | None = None  # of the file, once synthesised


class EmulatorState:
    """Generations, the request ledger, the fault draws, the rate limit's windows and the WAV cache;
    used only from the app's loop.

    :param config: the initial configuration (replaceable at run time).
    """

    def __init__(self, *, config: EmulatorConfig) -> None:
        self.config = config
        self.faults = FaultInjector(config.faults.seed)
        self.limiter = KeyLimiter()
        self.generations: dict[str, Generation] = {}
        self.files: dict[str, Generation] = {}
        self.stability = StabilityStore()  # the Stability routes' generations (stability.py)
        # (method, path, status or None if the connection was dropped, fault or None)
        self.requests: list[tuple[str, str, int | None, str | None]] = []
        self.fault_counts = dict.fromkeys(FAULT_KINDS, 0)
        self.epoch = 0  # bumped by reset, so requests spanning it stay out of the new ledger
        self.created_count = 0  # generations created since the last reset, both services
        self._wavs: OrderedDict[tuple[str, int], tuple[bytes, str]] = OrderedDict()
        self._wav_bytes = 0

    def next_draw(self) -> float:
        """The :func:`generation_draw` of the next generation created (either service)."""
        draw = generation_draw(self.created_count)
        self.created_count += 1
        return draw

    def create(
        self,
        *,
        prompt: str,
        seconds_total: int,
        seconds_start: int | None,
        steps: int,
        forced_error: bool = False,
    ) -> Generation:
        token = str(uuid.uuid4())
        gen = Generation(
            id=f"{token}:{MODEL}",
            file_name=f"{token}.wav",
            prompt=prompt,
            seconds_total=seconds_total,
            seconds_start=seconds_start,
            steps=steps,
            created_at=now_iso(),
            created=time.monotonic(),
            draw=self.next_draw(),
            forced_error=forced_error,
        )
        self.generations[gen.id] = self.files[gen.file_name] = gen
        return gen

    def status(self, gen: Generation) -> str:
        if gen.terminal is not None:
            return gen.terminal
        total = self.config.generation_time(gen.draw)
        elapsed = time.monotonic() - gen.created
        if elapsed >= total:
            failed = gen.forced_error or ERROR_MARKER in gen.prompt
            variants = self.config.variants
            gen.terminal = variants.failed_status if failed else variants.completed_status
            return gen.terminal
        return self.config.variants.pending_status(elapsed / total)

    def wav(self, gen: Generation) -> bytes:
        """Return the generation's WAV, synthesising it on first use (LRU-cached by size)."""
        key = (gen.prompt, gen.seconds_total)
        cached = self._wavs.get(key)
        if cached is None:
            data = synthesize_wav(gen.prompt, gen.seconds_total)
            cached = self._wavs[key] = (data, hashlib.sha256(data).hexdigest())
            self._wav_bytes += len(data)
            while self._wav_bytes > _WAV_CACHE_BYTES and len(self._wavs) > 1:
                self._wav_bytes -= len(self._wavs.popitem(last=False)[1][0])
        else:
            self._wavs.move_to_end(key)
        gen.sha256 = cached[1]
        return cached[0]

    def set_faults(self, faults: FaultConfig, *, reseed: bool) -> None:
        self.config = replace(self.config, faults=faults)
        if reseed:
            self.faults.reseed(faults.seed)

    def configure(self, config: EmulatorConfig) -> None:
        """Apply ``config``; new rate-limit settings start every key's window afresh."""
        if config.rate_limit != self.config.rate_limit:
            self.limiter.restart()
        self.config = config

    def record(self, method: str, path: str, status: int | None, fault: str | None) -> None:
        self.requests.append((method, path, status, fault))
        if fault is not None:
            self.fault_counts[fault] += 1

    def ledger(self) -> dict[str, Any]:
        """Return what was asked and served since the last reset (``GET /_emulator/ledger``).

        Per generation: ``generation_seconds``, its time from ``created_at`` to completion (under the
        current settings); ``polls`` answered by the handler (faulted ones are not), ``downloads``
        whose body started, ``complete_downloads`` that sent every byte, ``bytes_served`` in
        total, ``sha256`` of the file once synthesised (else None). Per request: ``status``
        (None when the connection was dropped) and ``fault`` (a kind, or None). ``faults``:
        how many times each kind was applied. ``stability``: the Stability routes' submits, results
        and generations (see :mod:`.stability`). ``rate_limit``: the 429s and lockouts of the key's
        rate limit (see :mod:`.ratelimit`).
        """
        return {
            "generations": [
                {
                    "id": g.id,
                    "model": MODEL,
                    "prompt": g.prompt,
                    "seconds_total": g.seconds_total,
                    "seconds_start": g.seconds_start,
                    "steps": g.steps,
                    "created_at": g.created_at,
                    "generation_seconds": self.config.generation_time(g.draw),
                    "status": self.status(g),
                    "polls": g.polls,
                    "downloads": g.downloads,
                    "complete_downloads": g.complete_downloads,
                    "bytes_served": g.bytes_served,
                    "sha256": g.sha256,
                }
                for g in self.generations.values()
            ],
            "requests": [{"method": m, "path": p, "status": s, "fault": f} for m, p, s, f in self.requests],
            "faults": dict(self.fault_counts),
            "stability": self.stability.ledger(self.config),
            "rate_limit": self.limiter.ledger(self.config.rate_limit),
        }

    def reset(self) -> None:
        """Forget generations, requests, fault counts and the rate limit's windows, lockouts and counts;
        end slow waits; re-seed the fault draws."""
        self.generations.clear()
        self.limiter.reset()
        self.files.clear()
        self.stability.reset()
        self.requests.clear()
        self.fault_counts = dict.fromkeys(FAULT_KINDS, 0)
        self.epoch += 1
        self.created_count = 0
        self.faults.wake()
        self.faults.reseed(self.config.faults.seed)


STATE_KEY = web.AppKey("stableaudio_emulator_state", EmulatorState)
