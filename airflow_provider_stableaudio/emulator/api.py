"""Handlers of the imitated API: create and poll generations, download their files."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from . import faults
from .audio import wav_size
from .envelope import error_response
from .state import MODEL, STATE_KEY
from .variants import COMPLETED_STATUSES

GENERATION_ERROR = "The model failed to generate audio for this prompt"
GENERATION_PATH = "/v2/generate/audio"
FILES_PREFIX = "/files/"
MAX_JSON_BYTES = 1024**2  # aiohttp's default client_max_size; the app's is larger for Stability's audio
_INT_FIELDS: dict[str, tuple[int, int, int | None]] = {
    "seconds_total": (1, 47, 30),
    "seconds_start": (0, 47, None),
    "steps": (1, 1000, 100),
}
_ALLOWED_FIELDS = frozenset({"model", "prompt", *_INT_FIELDS})


def accepted_key(request: web.Request, keys: frozenset[str]) -> str | None:
    """The request's Bearer key if the emulator accepts it (any non-empty key when ``keys`` is empty)."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key and (not keys or key in keys) else None


def authorized(request: web.Request, keys: frozenset[str]) -> bool:
    return accepted_key(request, keys) is not None


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _check_int(name: str, value: object, low: int, high: int) -> tuple[int | None, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"{name}: Expected number, received {_type_name(value)}"
    if isinstance(value, float) and not value.is_integer():
        return None, f"{name}: Expected integer, received float"
    number = int(value)
    if number < low:
        return None, f"{name}: Number must be greater than or equal to {low}"
    if number > high:
        return None, f"{name}: Number must be less than or equal to {high}"
    return number, None


def validate_create(body: object) -> tuple[dict[str, Any], list[str]]:
    """Validate a create body like the API's zod schema; return (parameters, problems)."""
    if not isinstance(body, dict):
        return {}, [f"Expected object, received {_type_name(body)}"]
    problems: list[str] = []
    unknown = [key for key in body if key not in _ALLOWED_FIELDS]
    if unknown:
        problems.append("Unrecognized key(s) in object: " + ", ".join(f"'{k}'" for k in unknown))
    if "model" not in body:
        problems.append("model: Required")
    elif body["model"] != MODEL:
        problems.append(f'model: Invalid literal value, expected "{MODEL}"')
    prompt = body.get("prompt")
    if "prompt" not in body:
        problems.append("prompt: Required")
    elif not isinstance(prompt, str):
        problems.append(f"prompt: Expected string, received {_type_name(prompt)}")
    elif not prompt.strip():
        problems.append("prompt: String must contain at least 1 character(s)")
    params: dict[str, Any] = {"prompt": prompt}
    for name, (low, high, default) in _INT_FIELDS.items():
        if name not in body:
            params[name] = default
            continue
        params[name], problem = _check_int(name, body[name], low, high)
        if problem:
            problems.append(problem)
    start, total = params["seconds_start"], params["seconds_total"]
    if start is not None and total is not None and start > total:
        problems.append("seconds_start: Number must be less than or equal to seconds_total")
    return params, problems


async def read_json(request: web.Request) -> tuple[object, str | None]:
    body = await request.read()
    if len(body) > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON_BYTES, actual_size=len(body))
    try:
        return json.loads(body), None
    except ValueError as exc:
        return None, f"Invalid JSON body: {exc}"


async def create(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not authorized(request, state.config.api_keys):
        return error_response(request, 401, "Unauthorized")
    body, problem = await read_json(request)
    if problem:
        return error_response(request, 400, problem)
    params, problems = validate_create(body)
    if problems:
        return error_response(request, 400, "; ".join(problems))
    gen = state.create(**params, forced_error=faults.current() == "generation_error")
    variants = state.config.variants
    body = {
        variants.id_field: gen.id,
        "status": variants.pending_statuses[0],
        "meta": {"usage": {"credits_used": variants.credits_per_step * gen.steps}},
    }
    return web.json_response(body, status=variants.create_status)


async def poll(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not authorized(request, state.config.api_keys):
        return error_response(request, 401, "Unauthorized")
    gen_id = request.query.get("generation_id", "")
    if not gen_id:
        return error_response(request, 400, "generation_id: Required")
    gen = state.generations.get(gen_id)
    if gen is None:
        return error_response(request, 404, "Generation not found")
    gen.polls += 1
    status = state.status(gen)
    variants = state.config.variants
    body: dict[str, Any] = {variants.id_field: gen.id, "status": status, "audio_file": None, "error": None}
    if status in COMPLETED_STATUSES:
        base = (state.config.public_base_url or f"{request.scheme}://{request.host}").rstrip("/")
        url = f"{base}{FILES_PREFIX}{gen.file_name}"
        if variants.url_ttl_seconds is not None:
            # Whole milliseconds, rounded down: a TTL of 0 hands out a URL that has already expired.
            url += f"?expires={int((time.time() + variants.url_ttl_seconds) * 1000)}"
        body["audio_file"] = {
            "url": url,
            "content_type": variants.content_type,
            "file_name": gen.file_name,
            "file_size": wav_size(gen.seconds_total),
        }
        if variants.audio_url is not None:
            body["audio_file"] = {"url": variants.audio_url}
        body["meta"] = {"usage": {"credits_used": variants.credits_per_step * gen.steps}}
    elif status in ("error", "failed"):
        body["error"] = {"name": "GenerationError", "message": GENERATION_ERROR}
    return web.json_response(body)


def _expired(expires: str | None) -> bool:
    """Whether a URL's ``expires`` (unix time in ms, from ``url_ttl_seconds``) has passed; a bad one has."""
    if expires is None:
        return False
    if not (expires.isascii() and expires.isdigit()):
        return True
    return time.time() * 1000 >= int(expires)


async def download(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    gen = state.files.get(request.match_info["name"])
    if gen is None or state.status(gen) not in COMPLETED_STATUSES:
        return error_response(request, 404, "File not found")
    if _expired(request.query.get("expires")):
        return error_response(request, 403, "Request has expired")
    data = state.wav(gen)
    response = web.StreamResponse(headers={"Content-Type": state.config.variants.content_type})
    response.content_length = len(data)
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    gen.downloads += 1

    def counted(sent: int) -> None:
        gen.bytes_served += sent

    if await faults.write_body(request, response, data, counted):
        gen.complete_downloads += 1
    return response
