"""Stability AI's Stable Audio API, served beside the AI/ML API's routes (same app, same port).

Routes (``stability-audio-contract.md``):

* ``POST /v2beta/audio/stable-audio/{mode}`` (``model=stable-audio-3``, the default and only value):
  **202** ``{"id": <64 hex>}``; the result is ready after the generation's time (``generation_seconds``,
  or its own draw up to ``generation_seconds_max``: see ``state.generation_draw``).
* ``POST /v2beta/audio/stable-audio-2/{mode}``: ``text-to-audio`` and ``audio-to-audio`` take
  ``model`` ``stable-audio-2.5`` (the default) or ``stable-audio-2``; ``inpaint`` is Stable Audio
  2.5 only and takes neither ``model`` nor ``cfg_scale``. Waits the generation's time, then
  **200** with the audio.
* ``GET /v2beta/audio/results/{id}``: **202** ``{"id", "status": "in-progress"}``, then **200** with
  the audio; **404** ``generation_not_found`` for an unknown id, a result past
  ``stability_result_ttl`` or, with ``stability_results_once``, one already served (see
  :mod:`.variants`).
* ``GET /v1/user/balance``: **200** ``{"credits": <float>}`` (1000 minus the credits of the
  successful generations since the last reset).

``{mode}`` is ``text-to-audio``, ``audio-to-audio`` or ``inpaint`` (another is 404). Bodies are
``multipart/form-data``; fields, ranges and defaults are :data:`.stability_form.MODELS` (numbers
such as ``duration``, ``strength`` or ``mask_start`` may be fractional); the input audio is the file
field ``audio``, 6 s to the model's longest duration (measured for WAV and MPEG Layer III input,
other input is accepted). Every refusal uses Stability's envelope ``{"id", "name", "errors"}``,
checked in this order: 401 (Bearer key, the same rules as the AI/ML routes), 403
``permission_denied`` on a Stable Audio 3 path under ``stability_sa3_access_denied``, 413 (a body
over 100 MB, Stable Audio 3's request limit, or on Stable Audio 2/2.5 an ``audio`` over 50 MB; MB
= 10**6 bytes), 400 ``bad_request`` (every problem, each message starting with the field's name),
403 ``content_moderation`` when the prompt contains ``[emulator:moderate]``. Refused requests
create nothing. Accepted ones create a generation: a prompt containing ``[emulator:filtered]``
gives one whose ``finish_reason`` is ``CONTENT_FILTERED`` and whose audio is silence; one
containing ``[emulator:moderate-result]`` gives one whose output was flagged: the submit is
accepted (202), its result answers 403 ``content_moderation`` (the synchronous call too, after the
wait), and it costs nothing.

Answers with audio: ``Accept: application/json`` gets ``{"audio": <base64>, "finish_reason",
"seed"}``; any other ``Accept`` (or none) gets the bytes, ``Content-Type: audio/wav`` or
``audio/mpeg`` by ``output_format`` (default mp3; what the bytes are: :mod:`.stability_audio`),
with headers ``finish-reason`` and ``seed`` (unless ``stability_audio_headers`` is off). A seed of
0 (the default) draws one from 1 to 4294967294. Every answer of these routes carries a fresh
``x-request-id`` (an error's is its envelope's ``id``).

Faults (:mod:`.faults`, drawn as for the AI/ML routes and limited by ``fault_methods`` too):
route ``stability_submit`` (POST, Stable Audio 3): ``drop, 429, 5xx, slow, malformed,
post_lost_response`` (a 504, a malformed 202 or a lost answer hide a created generation);
``stability_generate`` (POST, Stable Audio 2/2.5): ``drop, 429, 5xx, slow, post_lost_response,
download_truncated`` (504 and a lost answer come after the generation was created and paid;
truncation sends half the audio then closes); ``stability_result`` (GET): ``drop, 429, 5xx, slow,
download_truncated``; ``stability_balance`` (GET): ``drop, 429, 5xx, slow``.

Ledger (``ledger()["stability"]``): ``submits`` (model -> mode -> accepted generations),
``submit_count``, ``results_served`` (200 answers with a result whose body started: result GETs
and the synchronous POSTs), ``credits_used``, and ``generations``: per generation its fields,
``seed``, ``finish_reason`` (null when ``moderated``), ``moderated``, ``status`` (``in-progress``,
``complete``, ``served``, ``expired``), ``polls``, ``served``, ``complete_serves``,
``bytes_served``, ``file_size``, ``sha256``, ``input_size``, ``input_sha256``,
``derived_from_input``, and the ``stability-client-id`` and ``stability-client-version`` headers
of the submit (``client_id``, ``client_version``, or null).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from aiohttp import web

from . import faults
from .api import authorized
from .envelope import request_id_header, stability_error, stability_json
from .faults import (
    ROUTE_STABILITY_BALANCE,
    ROUTE_STABILITY_GENERATE,
    ROUTE_STABILITY_RESULT,
    ROUTE_STABILITY_SUBMIT,
)
from .stability_form import ASYNC_FAMILY, MODES, SYNC_FAMILY, RequestError, read_form, validate
from .stability_state import MODERATE_MARKER, STARTING_CREDITS
from .state import STATE_KEY

if TYPE_CHECKING:
    from .stability_form import StabilityRequest
    from .stability_state import StabilityGeneration

SUBMIT_PREFIX = f"/v2beta/audio/{ASYNC_FAMILY}/"
GENERATE_PREFIX = f"/v2beta/audio/{SYNC_FAMILY}/"
RESULTS_PREFIX = "/v2beta/audio/results/"
BALANCE_PATH = "/v1/user/balance"
_MODERATION = (
    "Your request was flagged by our content moderation system, as a result your request was denied "
    "and you were not charged."
)
_NO_SA3_ACCESS = "Your account does not have access to Stable Audio 3 (allow-access-stable-audio-3-api)"
# Faults that replace a synchronous answer after the generation was created: stream nothing.
_ANSWER_REPLACED = frozenset({"504", "post_lost_response"})


def add_routes(app: web.Application) -> None:
    app.router.add_post(SUBMIT_PREFIX + "{mode}", submit)
    app.router.add_post(GENERATE_PREFIX + "{mode}", generate)
    app.router.add_get(RESULTS_PREFIX + "{id}", result)
    app.router.add_get(BALANCE_PATH, balance)


def fault_route(path: str) -> str | None:
    """The fault route (:mod:`.faults`) of a Stability path, or None."""
    if path.startswith(SUBMIT_PREFIX):
        return ROUTE_STABILITY_SUBMIT
    if path.startswith(GENERATE_PREFIX):
        return ROUTE_STABILITY_GENERATE
    if path.startswith(RESULTS_PREFIX):
        return ROUTE_STABILITY_RESULT
    return ROUTE_STABILITY_BALANCE if path == BALANCE_PATH else None


def _unauthorized(request: web.Request) -> web.Response | None:
    if authorized(request, request.app[STATE_KEY].config.api_keys):
        return None
    return stability_error(401, ["authorization: missing or refused Bearer key"])


def _client(request: web.Request) -> tuple[str | None, str | None]:
    return request.headers.get("stability-client-id"), request.headers.get("stability-client-version")


async def _accept(request: web.Request, family: str) -> StabilityRequest | web.Response:
    """The validated request, or the answer refusing it (nothing is created then)."""
    mode = request.match_info["mode"]
    if mode not in MODES:
        return stability_error(404, [f"mode: no such mode {mode!r} (one of {', '.join(MODES)})"])
    refused = _unauthorized(request)
    if refused is not None:
        return refused
    if family == ASYNC_FAMILY and request.app[STATE_KEY].config.variants.stability_sa3_access_denied:
        return stability_error(403, [_NO_SA3_ACCESS], name="permission_denied")  # before the body: a gate
    try:
        fields, audio = await read_form(request, family)
        accepted = validate(family, mode, fields, audio)
    except RequestError as exc:
        return stability_error(exc.status, exc.errors, name=exc.name)
    if MODERATE_MARKER in accepted.prompt:
        return _moderation()
    return accepted


def _moderation() -> web.Response:
    return stability_error(403, [_MODERATION], name="content_moderation")


async def submit(request: web.Request) -> web.Response:
    accepted = await _accept(request, ASYNC_FAMILY)
    if isinstance(accepted, web.Response):
        return accepted
    state = request.app[STATE_KEY]
    gen = state.stability.create(accepted, asynchronous=True, draw=state.next_draw(), client=_client(request))
    return stability_json({"id": gen.id}, status=202)


async def generate(request: web.Request) -> web.StreamResponse:
    accepted = await _accept(request, SYNC_FAMILY)
    if isinstance(accepted, web.Response):
        return accepted
    state = request.app[STATE_KEY]
    gen = state.stability.create(
        accepted, asynchronous=False, draw=state.next_draw(), client=_client(request)
    )
    if not await state.faults.sleep(state.config.generation_time(gen.draw)):
        return faults.drop(request)  # a reset or shutdown ended the wait
    if faults.current() in _ANSWER_REPLACED:
        return web.Response(status=200)  # replaced by the fault: the generation exists, its answer is lost
    if gen.moderated:
        return _moderation()
    return await _serve(request, gen)


async def result(request: web.Request) -> web.StreamResponse:
    refused = _unauthorized(request)
    if refused is not None:
        return refused
    state = request.app[STATE_KEY]
    gen_id = request.match_info["id"]
    gen = state.stability.result(gen_id)
    if gen is None:
        return _not_found(f"id: no generation {gen_id!r}")
    gen.polls += 1
    status = state.stability.status(gen, state.config)
    if status == "in-progress":
        return stability_json({"id": gen.id, "status": "in-progress"}, status=202)
    if status != "complete":
        gone = "expired" if status == "expired" else "been served already"
        return _not_found(f"id: the result of {gen_id!r} has {gone}")
    if gen.moderated:
        return _moderation()
    return await _serve(request, gen)


def _not_found(message: str) -> web.Response:
    return stability_error(404, [message], name="generation_not_found")


async def balance(request: web.Request) -> web.Response:
    refused = _unauthorized(request)
    if refused is not None:
        return refused
    return stability_json({"credits": STARTING_CREDITS - request.app[STATE_KEY].stability.credits_used})


async def _serve(request: web.Request, gen: StabilityGeneration) -> web.StreamResponse:
    """Answer 200 with the result, as bytes or JSON by ``Accept``, applying a truncation fault."""
    state = request.app[STATE_KEY]
    render = gen.render
    assert render is not None  # only a served or expired result has dropped it
    data, _, _ = await render
    if gen.asynchronous and state.config.variants.stability_results_once:
        state.stability.consume(gen)  # before the first byte, so a concurrent GET already gets 404
    assert gen.finish_reason is not None  # only a flagged output has none, and it is never served
    headers = {"Content-Type": gen.content_type, **request_id_header()}
    if "application/json" in request.headers.get("Accept", ""):
        body = {
            "audio": base64.b64encode(data).decode("ascii"),
            "finish_reason": gen.finish_reason,
            "seed": gen.seed,
        }
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif state.config.variants.stability_audio_headers:
        headers.update({"finish-reason": gen.finish_reason, "seed": str(gen.seed)})
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)
    await response.prepare(request)
    gen.served += 1

    def counted(sent: int) -> None:
        gen.bytes_served += sent

    if await faults.write_body(request, response, data, counted):
        gen.complete_serves += 1
    return response
