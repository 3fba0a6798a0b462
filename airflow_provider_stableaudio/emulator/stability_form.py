"""Stability requests: each model's fields and ranges (data), multipart reading and validation.

The fields, ranges, defaults and limits are those of ``stability-audio-contract.md`` (Stability's
OpenAPI document); each is an entry of :data:`MODELS`, :data:`NOT_TAKEN` or the byte limits below,
not a code path. The input audio's length is measured for 16-bit PCM WAV (its header) and MPEG
Layer III (its frames, :func:`.stability_audio.audio_seconds`); other input is accepted unmeasured.
"""

from __future__ import annotations

import email.message
import email.parser
import email.utils
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from .stability_audio import audio_seconds, is_audio

if TYPE_CHECKING:
    from collections.abc import Mapping

MODES = ("text-to-audio", "audio-to-audio", "inpaint")
ASYNC_FAMILY = "stable-audio"  # POST /v2beta/audio/stable-audio/{mode}: 202 + id
SYNC_FAMILY = "stable-audio-2"  # POST /v2beta/audio/stable-audio-2/{mode}: 200 + audio
FILE_FIELD = "audio"
# The document's "MB" read as 10**6 bytes, as the provider reads it (input_audio.MAX_INPUT_BYTES):
# the stricter reading of 50 MB, and the one that admits no request the real API would refuse.
MB = 1000 * 1000
MAX_BODY_BYTES = 100 * MB  # Stable Audio 3's "maximum request size"; the app's client_max_size
MAX_AUDIO_BYTES: dict[str, int] = {SYNC_FAMILY: 50 * MB}  # Stable Audio 2/2.5 limit the input file
OUTPUT_FORMATS = ("mp3", "wav")


@dataclass(frozen=True)
class Range:
    """A numeric form field: bounds, default (None: absent unless given) and whether it is an integer."""

    low: float
    high: float
    default: float | None = None
    integer: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """One model: its path family, the fields of every mode, each mode's own fields (a mode absent
    is not served), the input audio's length in seconds, its credits per generation."""

    family: str
    numbers: Mapping[str, Range]
    modes: Mapping[str, Mapping[str, Range]]
    input_seconds: tuple[float, float]
    credits: float


def _modes(longest: float, strength_low: float, *, inpaint: bool = True) -> dict[str, dict[str, Range]]:
    modes: dict[str, dict[str, Range]] = {
        "text-to-audio": {},
        "audio-to-audio": {"strength": Range(strength_low, 1, 1)},
    }
    if inpaint:
        modes["inpaint"] = {"mask_start": Range(0, longest, 30), "mask_end": Range(0, longest, longest)}
    return modes


_SEED = Range(0, 4294967294, 0, integer=True)
MODELS: dict[str, ModelSpec] = {
    "stable-audio-3": ModelSpec(
        ASYNC_FAMILY,
        {
            "duration": Range(1, 380, 190),
            "seed": _SEED,
            "steps": Range(4, 8, 8, integer=True),
            "cfg_scale": Range(1, 25, 1),
        },
        _modes(380, 0),
        input_seconds=(6, 380),
        credits=26,
    ),
    "stable-audio-2.5": ModelSpec(
        SYNC_FAMILY,
        {
            "duration": Range(1, 190, 190),
            "seed": _SEED,
            "steps": Range(4, 8, 8, integer=True),
            "cfg_scale": Range(1, 25, 1),
        },
        _modes(190, 0.01),
        input_seconds=(6, 190),
        credits=20,
    ),
    "stable-audio-2": ModelSpec(
        SYNC_FAMILY,
        {
            "duration": Range(1, 190, 190),
            "seed": _SEED,
            "steps": Range(30, 100, 50, integer=True),
            "cfg_scale": Range(1, 25, 7),
        },
        _modes(190, 0, inpaint=False),  # Stable Audio 2 has no inpaint
        input_seconds=(6, 190),
        credits=20,
    ),
}
DEFAULT_MODEL = {ASYNC_FAMILY: "stable-audio-3", SYNC_FAMILY: "stable-audio-2.5"}
# Fields a path's schema lacks although its model has them: stable-audio-2/inpaint serves Stable
# Audio 2.5 only and takes neither ``model`` nor ``cfg_scale``.
NOT_TAKEN: dict[tuple[str, str], frozenset[str]] = {
    (SYNC_FAMILY, "inpaint"): frozenset({"model", "cfg_scale"}),
}


class RequestError(Exception):
    """A request refused before anything was created: its status, error name and messages."""

    def __init__(self, status: int, errors: list[str], name: str | None = None) -> None:
        super().__init__("; ".join(errors))
        self.status, self.errors, self.name = status, errors, name


@dataclass(frozen=True, kw_only=True)
class StabilityRequest:
    """A validated generation request (``audio``: the init audio's bytes, or None)."""

    model: str
    mode: str
    prompt: str
    output_format: str
    numbers: dict[str, float | None] = field(default_factory=dict)
    audio: bytes | None = None

    def number(self, name: str) -> float | None:
        return self.numbers.get(name)

    @property
    def duration(self) -> float:
        value = self.numbers["duration"]
        assert value is not None  # every model has a default duration
        return value


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _parse_number(name: str, raw: str, spec: Range) -> tuple[float | None, str | None]:
    try:
        value = float(raw)
    except ValueError:
        return None, f"{name}: must be a number (got {raw!r})"
    if not math.isfinite(value):
        return None, f"{name}: must be a finite number (got {raw!r})"
    if spec.integer and not value.is_integer():
        return None, f"{name}: must be an integer (got {raw!r})"
    if not spec.low <= value <= spec.high:
        return None, f"{name}: must be from {_text(spec.low)} to {_text(spec.high)} (got {raw})"
    return value, None


def _form_parts(body: bytes, boundary: str) -> list[tuple[str | None, str | None, bytes]]:
    """Split a ``multipart/form-data`` body into (name, filename, content); raise ValueError if malformed."""
    delimiter = b"--" + boundary.encode("latin-1")
    pos = (
        len(delimiter) if body.startswith(delimiter) else body.find(b"\r\n" + delimiter) + 2 + len(delimiter)
    )
    if pos < len(delimiter):
        raise ValueError("no boundary")
    parts: list[tuple[str | None, str | None, bytes]] = []
    while not body.startswith(b"--", pos):
        if not body.startswith(b"\r\n", pos):
            raise ValueError("no line break after a boundary")
        head_end = body.find(b"\r\n\r\n", pos)
        end = body.find(b"\r\n" + delimiter, head_end + 4)
        if head_end < 0 or end < 0:
            raise ValueError("a part is not closed by a boundary")
        headers = email.parser.BytesHeaderParser().parsebytes(body[pos + 2 : head_end + 4])
        name = headers.get_param("name", header="content-disposition")
        filename = headers.get_filename()
        text = None if name is None else email.utils.collapse_rfc2231_value(name)
        parts.append((text, filename, body[head_end + 4 : end]))
        pos = end + 2 + len(delimiter)
    return parts


async def read_form(request: web.Request, family: str) -> tuple[dict[str, str], bytes | None]:
    """Read a ``multipart/form-data`` body: the text fields and the ``audio`` file.

    The body is read whole (a ``slow`` fault may have read it already: aiohttp keeps it).
    Raises :class:`RequestError`: 400 for a malformed body, 413 for a body over
    :data:`MAX_BODY_BYTES` or an ``audio`` over the family's :data:`MAX_AUDIO_BYTES`.
    """
    header = email.message.Message()
    header["content-type"] = request.headers.get("Content-Type", "")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise RequestError(400, ["content-type: must be multipart/form-data with a boundary"])
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(413, [f"body: larger than {MAX_BODY_BYTES} bytes"]) from None
    try:
        parts = _form_parts(body, boundary)
    except ValueError as exc:
        raise RequestError(400, [f"body: malformed multipart/form-data ({exc})"]) from None
    del body
    fields: dict[str, str] = {}
    audio: bytes | None = None
    problems: list[str] = []
    for name, filename, content in parts:
        if not name:
            problems.append("body: every part must be a named form field")
        elif name in fields or (name == FILE_FIELD and audio is not None):
            problems.append(f"{name}: given more than once")
        elif name == FILE_FIELD:
            limit = MAX_AUDIO_BYTES.get(family)
            if limit is not None and len(content) > limit:
                raise RequestError(413, [f"{FILE_FIELD}: larger than {limit} bytes"])
            audio = content
        elif filename is not None:
            problems.append(f"{name}: unexpected file (the input audio goes in '{FILE_FIELD}')")
        else:
            try:
                fields[name] = content.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{name}: must be UTF-8 text")
    if problems:
        raise RequestError(400, problems)
    return fields, audio


def _check_audio(mode: str, audio: bytes | None, spec: ModelSpec, problems: list[str]) -> None:
    if mode == "text-to-audio":
        if audio is not None:
            problems.append(f"{FILE_FIELD}: not accepted by text-to-audio")
        return
    if audio is None:
        problems.append(f"{FILE_FIELD}: required for {mode}")
    elif not is_audio(audio):
        problems.append(f"{FILE_FIELD}: must be an mp3 or wav file")
    else:
        measured = audio_seconds(audio)
        low, high = spec.input_seconds
        if measured is None:
            return  # not measurable here: the real API's decoder would know, the emulator accepts it
        shortest, longest = measured
        if longest < low or shortest > high:  # refused only when surely out of range
            got = longest if longest < low else shortest
            problems.append(
                f"{FILE_FIELD}: must last from {_text(low)} to {_text(high)} seconds (got {got:.2f})"
            )


def _model(family: str, mode: str, fields: dict[str, str], problems: list[str]) -> tuple[str, ModelSpec]:
    """The model a request asks for (popped from ``fields``); raise :class:`RequestError` if none fits."""
    default = DEFAULT_MODEL[family]
    if "model" in NOT_TAKEN.get((family, mode), ()):
        if "model" in fields:
            problems.append(f"model: not accepted by {family}/{mode}, which serves {default} only")
            del fields["model"]
        return default, MODELS[default]
    model = fields.pop("model", default)
    spec = MODELS.get(model)
    if spec is None or spec.family != family:
        served = sorted(name for name, item in MODELS.items() if item.family == family)
        raise RequestError(400, [f"model: must be one of {', '.join(served)} on this path (got {model!r})"])
    if mode not in spec.modes:
        raise RequestError(400, [f"model: {model} has no {mode}"])
    return model, spec


def validate(family: str, mode: str, fields: dict[str, str], audio: bytes | None) -> StabilityRequest:
    """Check the fields of a ``family`` request in ``mode``; raise :class:`RequestError` (400) naming them."""
    problems: list[str] = []
    fields = dict(fields)
    model, spec = _model(family, mode, fields, problems)
    prompt = fields.pop("prompt", None)
    if prompt is None:
        problems.append("prompt: required")
    elif not prompt.strip() or len(prompt) > 10000:
        problems.append(f"prompt: must have 1 to 10000 characters (got {len(prompt.strip())})")
    output_format = fields.pop("output_format", "mp3")
    if output_format not in OUTPUT_FORMATS:
        problems.append(f"output_format: must be one of {', '.join(OUTPUT_FORMATS)} (got {output_format!r})")
    not_taken = NOT_TAKEN.get((family, mode), frozenset())
    numbers: dict[str, float | None] = {}
    for name, item in {**spec.numbers, **spec.modes[mode]}.items():
        if name in not_taken:
            continue  # left in ``fields``: refused below as a field this path does not take
        raw = fields.pop(name, None)
        value, problem = (item.default, None) if raw is None else _parse_number(name, raw, item)
        numbers[name] = None if value is None else int(value) if item.integer else float(value)
        if problem:
            problems.append(problem)
    problems.extend(f"{name}: not accepted by {model} {mode}" for name in sorted(fields))
    start, end = numbers.get("mask_start"), numbers.get("mask_end")
    if start is not None and end is not None and start >= end:
        problems.append(f"mask_end: must be greater than mask_start (got {_text(end)} <= {_text(start)})")
    _check_audio(mode, audio, spec, problems)
    if problems:
        raise RequestError(400, problems)
    return StabilityRequest(
        model=model,
        mode=mode,
        prompt=prompt or "",
        output_format=output_format,
        numbers=numbers,
        audio=audio,
    )
