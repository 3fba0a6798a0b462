"""State of the Stability routes: generations, their results' lifetime, credits and the ledger."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .envelope import now_iso
from .stability_audio import render
from .stability_form import MODELS

if TYPE_CHECKING:
    from .stability_form import StabilityRequest
    from .state import EmulatorConfig

STARTING_CREDITS = 1000.0
MODERATE_MARKER = "[emulator:moderate]"  # 403 content_moderation, nothing created
MODERATE_RESULT_MARKER = "[emulator:moderate-result]"  # created, uncharged; its result is a 403
FILTER_MARKER = "[emulator:filtered]"  # 200 with finish_reason CONTENT_FILTERED and silence


@dataclass(kw_only=True)
class StabilityGeneration:
    """One accepted generation (Stable Audio 3 results are fetched by ``id``; sync ones never are)."""

    id: str
    request: StabilityRequest
    asynchronous: bool
    seed: int
    finish_reason: str | None  # None: the output was flagged (``moderated``), there is none
    created_at: str
    created: float  # time.monotonic() at creation
    draw: float  # state.generation_draw(): where its time lies in the configured range
    input_size: int | None
    input_sha256: str | None
    client: tuple[str | None, str | None] = (None, None)  # stability-client-id, -version headers
    render: asyncio.Future[tuple[bytes, str, bool]] | None = None  # dropped once gone or expired
    completed: float | None = None  # monotonic time it completed, latched
    consumed: bool = False  # served once under stability_results_once
    moderated: bool = False  # the output was flagged: its result answers 403 content_moderation
    polls: int = 0
    served: int = 0  # 200 answers with the result whose body started
    complete_serves: int = 0
    bytes_served: int = 0
    sha256: str | None = None
    file_size: int | None = None
    derived_from_input: bool | None = None

    @property
    def content_type(self) -> str:
        return "audio/mpeg" if self.request.output_format == "mp3" else "audio/wav"


class StabilityStore:
    """The Stability generations since the last reset; used only from the app's loop."""

    def __init__(self) -> None:
        self.generations: dict[str, StabilityGeneration] = {}

    def create(
        self,
        request: StabilityRequest,
        *,
        asynchronous: bool,
        draw: float = 0.0,
        client: tuple[str | None, str | None] = (None, None),
    ) -> StabilityGeneration:
        """Record an accepted generation and start rendering its audio in a worker thread
        (none for a flagged output: it is never served)."""
        seed = int(request.number("seed") or 0) or 1 + secrets.randbelow(4294967294)  # 0 = random
        filtered = FILTER_MARKER in request.prompt
        moderated = MODERATE_RESULT_MARKER in request.prompt
        audio = request.audio
        gen = StabilityGeneration(
            id=secrets.token_hex(32),
            request=request if not moderated else replace(request, audio=None),
            asynchronous=asynchronous,
            seed=seed,
            finish_reason=None if moderated else "CONTENT_FILTERED" if filtered else "SUCCESS",
            created_at=now_iso(),
            created=time.monotonic(),
            draw=draw,
            input_size=None if audio is None else len(audio),
            input_sha256=None if audio is None else hashlib.sha256(audio).hexdigest(),
            client=client,
            moderated=moderated,
        )
        if not moderated:
            gen.render = asyncio.get_running_loop().run_in_executor(None, render, request, seed, filtered)
            gen.render.add_done_callback(lambda done: self._rendered(gen, done))
        self.generations[gen.id] = gen
        return gen

    @staticmethod
    def _rendered(gen: StabilityGeneration, done: asyncio.Future[tuple[bytes, str, bool]]) -> None:
        if not done.cancelled() and done.exception() is None:
            data, gen.sha256, gen.derived_from_input = done.result()
            gen.file_size = len(data)
        gen.request = replace(gen.request, audio=None)  # the input is no longer needed

    def result(self, gen_id: str) -> StabilityGeneration | None:
        """A Stable Audio 3 generation by id (None if unknown or not fetchable by id)."""
        gen = self.generations.get(gen_id)
        return gen if gen is not None and gen.asynchronous else None

    def status(self, gen: StabilityGeneration, config: EmulatorConfig) -> str:
        """``in-progress``, ``complete``, ``served`` (gone after its one serving) or ``expired``."""
        now = time.monotonic()
        if gen.completed is None:
            if gen.asynchronous and now - gen.created < config.generation_time(gen.draw):
                return "in-progress"
            gen.completed = now if gen.asynchronous else gen.created
        if gen.consumed:
            return "served"
        if gen.asynchronous and now >= gen.completed + config.variants.stability_result_ttl:
            gen.render = None  # free the audio: it will never be served again
            return "expired"
        return "complete"

    def consume(self, gen: StabilityGeneration) -> None:
        gen.consumed = True
        gen.render = None

    @property
    def credits_used(self) -> float:
        return sum(
            MODELS[g.request.model].credits for g in self.generations.values() if g.finish_reason == "SUCCESS"
        )

    def ledger(self, config: EmulatorConfig) -> dict[str, Any]:
        """The ``stability`` part of the ledger; see ``stability.py``'s docstring for the keys."""
        submits: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for gen in self.generations.values():
            submits[gen.request.model][gen.request.mode] += 1
        return {
            "submits": {model: dict(modes) for model, modes in submits.items()},
            "submit_count": len(self.generations),
            "results_served": sum(g.served for g in self.generations.values()),
            "credits_used": self.credits_used,
            "generations": [self._entry(g, config) for g in self.generations.values()],
        }

    def _entry(self, gen: StabilityGeneration, config: EmulatorConfig) -> dict[str, Any]:
        request = gen.request
        return {
            "id": gen.id,
            "model": request.model,
            "mode": request.mode,
            "asynchronous": gen.asynchronous,
            "prompt": request.prompt,
            **request.numbers,
            "seed": gen.seed,
            "output_format": request.output_format,
            "finish_reason": gen.finish_reason,
            "moderated": gen.moderated,
            "created_at": gen.created_at,
            "generation_seconds": config.generation_time(gen.draw),
            "status": self.status(gen, config),
            "polls": gen.polls,
            "served": gen.served,
            "complete_serves": gen.complete_serves,
            "bytes_served": gen.bytes_served,
            "file_size": gen.file_size,
            "sha256": gen.sha256,
            "content_type": gen.content_type,
            "input_size": gen.input_size,
            "input_sha256": gen.input_sha256,
            "derived_from_input": gen.derived_from_input,
            "client_id": gen.client[0],
            "client_version": gen.client[1],
        }

    def reset(self) -> None:
        self.generations.clear()
