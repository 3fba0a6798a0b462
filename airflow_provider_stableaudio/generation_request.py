"""The request model: which fields each model of ``POST /v2/generate/audio`` takes, and their checks.

Models are data (:data:`MODELS`), so another model of the endpoint is one more entry, not new code.
No Airflow imports: this runs in DAG parsing, in ``execute`` before any HTTP call, and in tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.api_errors import shorten
from airflow_provider_stableaudio.exceptions import StableAudioValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_MODEL = "stable-audio"
# A whole number written as text, as a template such as "{{ params.seconds }}" renders it.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class IntField:
    """An integer request field with an inclusive range.

    :param name: the field's name in the JSON body.
    :param minimum: smallest allowed value.
    :param maximum: largest allowed value.
    :param default: value sent when the caller gives none; ``None`` leaves the field out.
    :param required: whether the caller must give it.
    """

    name: str
    minimum: int
    maximum: int
    default: int | None = None
    required: bool = False

    def check(self, value: Any) -> int:
        """``value`` as an int in range: an int, or a string holding a whole number (``"8"``, ``" 8 "``).

        Templates render to text unless the DAG sets ``render_template_as_native_obj``, so
        ``"{{ params.seconds }}"`` arrives as ``"8"``; ``"8.5"``, ``"eight"`` and ``True`` do not pass.
        """
        allowed = f"an integer from {self.minimum} to {self.maximum}"
        if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
            value = int(value)
        # bool is an int subclass, and never a count of seconds or steps.
        if isinstance(value, bool) or not isinstance(value, int):
            raise StableAudioValidationError(
                f"{self.name} must be {allowed}, got {value!r} ({type(value).__name__})", field=self.name
            )
        if not self.minimum <= value <= self.maximum:
            raise StableAudioValidationError(f"{self.name} must be {allowed}, got {value}", field=self.name)
        return value


@dataclass(frozen=True)
class TextField:
    """A string request field that may not be empty or blank.

    :param name: the field's name in the JSON body.
    :param max_length: longest allowed value, if the API sets one.
    :param required: whether the caller must give it.
    """

    name: str
    max_length: int | None = None
    required: bool = False
    default: None = None

    def check(self, value: Any) -> str:
        limit = f" of at most {self.max_length} characters" if self.max_length else ""
        if not isinstance(value, str):
            raise StableAudioValidationError(
                f"{self.name} must be a non-empty string{limit}, got {value!r} ({type(value).__name__})",
                field=self.name,
            )
        if not value.strip():
            raise StableAudioValidationError(
                f"{self.name} must be a non-empty string{limit}, got {value!r}", field=self.name
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise StableAudioValidationError(
                f"{self.name} must be a non-empty string{limit}, got {len(value)} characters", field=self.name
            )
        return value


@dataclass(frozen=True)
class ModelSpec:
    """What one model of the endpoint accepts.

    :param model_id: the ``model`` value sent to the API.
    :param fields: the fields it accepts besides ``model``.
    :param not_after: pairs ``(a, b)`` where field ``a`` may not exceed field ``b``.
    :param duration_field: the field that holds the clip's length in seconds, if any.
    """

    model_id: str
    fields: tuple[IntField | TextField, ...]
    not_after: tuple[tuple[str, str], ...] = ()
    duration_field: str | None = None
    field_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_names", frozenset(f.name for f in self.fields))


MODELS: dict[str, ModelSpec] = {
    "stable-audio": ModelSpec(
        model_id="stable-audio",
        fields=(
            TextField("prompt", required=True),
            IntField("seconds_total", 1, 47, default=30),
            # The current schema says 1..47, older readings 0..47: the API accepts 0.
            IntField("seconds_start", 0, 47),
            IntField("steps", 1, 1000, default=100),
        ),
        not_after=(("seconds_start", "seconds_total"),),
        duration_field="seconds_total",
    ),
}


@dataclass(frozen=True)
class GenerationRequest:
    """A validated body for ``POST /v2/generate/audio``; build it with :meth:`build`."""

    model: str
    params: Mapping[str, Any]

    @classmethod
    def build(cls, model: str = DEFAULT_MODEL, **params: Any) -> GenerationRequest:
        """Validate ``params`` for ``model``; ``None`` values count as not given.

        :raises StableAudioValidationError: naming the field, the value and the allowed range.
        """
        spec = MODELS.get(model) if isinstance(model, str) else None
        if spec is None:
            raise StableAudioValidationError(
                f"model must be one of {sorted(MODELS)}, got {model!r}", field="model"
            )
        given = {name: value for name, value in params.items() if value is not None}
        unknown = sorted(set(given) - spec.field_names)
        if unknown:
            raise StableAudioValidationError(
                f"unknown field(s) {unknown} for model {model!r}; allowed fields: {sorted(spec.field_names)}",
                field=unknown[0],
            )
        body: dict[str, Any] = {}
        for spec_field in spec.fields:
            if spec_field.name in given:
                body[spec_field.name] = spec_field.check(given[spec_field.name])
            elif spec_field.required:
                raise StableAudioValidationError(f"{spec_field.name} is required", field=spec_field.name)
            elif spec_field.default is not None:
                body[spec_field.name] = spec_field.default
        for lower, upper in spec.not_after:
            if lower in body and upper in body and body[lower] > body[upper]:
                raise StableAudioValidationError(
                    f"{lower} must be at most {upper} ({body[upper]}), got {body[lower]}", field=lower
                )
        return cls(model=model, params=body)

    @property
    def duration_seconds(self) -> int | None:
        """The requested clip length, for models that take one."""
        name = MODELS[self.model].duration_field
        return self.params.get(name) if name else None

    def to_json(self) -> dict[str, Any]:
        """The JSON body to send."""
        return {"model": self.model, **self.params}

    def fingerprint(self) -> str:
        """A short digest of the body: tells whether a later try asks for the same clip."""
        body = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def returned_fields(returned: Any, *, model: Any = DEFAULT_MODEL) -> dict[str, Any]:
    """The request fields in what a ``@task.stable_audio`` function returned.

    :param returned: the prompt (a string) or a dict of request fields (``prompt``, ``model``, ...).
    :param model: the task's model, whose fields a dict without ``model`` may hold.
    :raises StableAudioValidationError: anything else, naming what was returned and what is allowed.
    """
    if isinstance(returned, str):
        return {"prompt": returned}
    asked = returned.get("model", model) if isinstance(returned, dict) else model
    # An unknown model is GenerationRequest.build's to report, with the models there are.
    spec = MODELS.get(asked) if isinstance(asked, str) else None
    allowed = sorted({"model", *(spec or MODELS[DEFAULT_MODEL]).field_names})
    if isinstance(returned, dict):
        unknown = sorted(str(name) for name in returned if name not in allowed)
        if not unknown or spec is None:
            return dict(returned)
        problem = f"a dict with unknown field(s) {unknown}"
    else:
        problem = f"{shorten(repr(returned))} ({type(returned).__name__})"
    raise StableAudioValidationError(
        f"returned {problem}; return the prompt (a string) or a dict of request fields from {allowed}"
    )
