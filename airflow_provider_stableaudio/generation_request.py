"""The request: a model's fields validated, its mode settled, and the body each service takes.

The models, their fields and ranges are data in :mod:`airflow_provider_stableaudio.models`.
No Airflow imports: this runs in DAG parsing, in ``execute`` before any HTTP call, and in tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.api_errors import shorten
from airflow_provider_stableaudio.exceptions import StableAudioValidationError
from airflow_provider_stableaudio.input_audio import InputAudio
from airflow_provider_stableaudio.models import (
    AIMLAPI,
    AUDIO_TO_AUDIO,
    INPAINT,
    INPUT_AUDIO_MODES,
    MODELS,
    TEXT_TO_AUDIO,
    ChoiceField,
    FloatField,
    IntField,
    ModelSpec,
    TextField,
    default_model,
    mode_owners,
    models_with_mode,
    number_text,
    service_of,
    spec_of,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_stableaudio.models import Field

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ChoiceField",
    "FloatField",
    "GenerationRequest",
    "IntField",
    "ModelSpec",
    "TextField",
    "default_model",
    "returned_fields",
    "service_of",
]

#: The AI/ML API's model, the default of the operator with its connection.
DEFAULT_MODEL = default_model(AIMLAPI)


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request; build it with :meth:`build`.

    :param model: the model id.
    :param params: the fields to send besides ``model``, checked and with defaults filled in.
    :param mode: ``text-to-audio``, ``audio-to-audio`` or ``inpaint``.
    :param init_audio: the checked input clip of ``audio-to-audio`` and ``inpaint``.
    """

    model: str
    params: Mapping[str, Any]
    mode: str = TEXT_TO_AUDIO
    init_audio: InputAudio | None = None

    @classmethod
    def build(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        mode: str | None = None,
        init_audio: Any = None,
        check_audio: bool = True,
        **params: Any,
    ) -> GenerationRequest:
        """Validate ``params`` for ``model`` in ``mode``; ``None`` values count as not given.

        :param model: the model id (already resolved: a service's default is the caller's to pick).
        :param mode: the mode; ``None`` infers it: ``init_audio`` with ``mask_start`` or ``mask_end``
            is ``inpaint``, ``init_audio`` otherwise ``audio-to-audio``, no ``init_audio``
            ``text-to-audio``.
        :param init_audio: the input clip: a local path, a URI, an ``ObjectStoragePath`` or an
            :class:`~airflow_provider_stableaudio.input_audio.InputAudio`; opened and checked last.
        :param check_audio: ``False`` only describes ``init_audio`` (for a request already sent).
        :raises StableAudioValidationError: naming the field, the value and the allowed range.
        """
        spec = spec_of(model)
        given = {name: value for name, value in params.items() if value is not None}
        unknown = sorted(set(given) - spec.field_names)
        if unknown:
            raise _unknown_fields(spec, unknown)
        mode = _settle_mode(spec, mode, given, has_audio=init_audio is not None)
        body: dict[str, Any] = {}
        for spec_field in spec.fields_of(mode):
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
        fields = {f.name: f for f in spec.fields_of(mode)}
        for lower, upper in spec.before:
            if lower not in fields or upper not in fields or not {lower, upper} & set(body):
                continue
            low, high = (_value_or_api_default(fields[name], body) for name in (lower, upper))
            if low is not None and high is not None and low >= high:
                # Name the field the caller gave: the other one is the API's default.
                culprit = lower if lower in body else upper
                said = {
                    name: number_text(value) + ("" if name in body else " by the API's default")
                    for name, value in ((lower, low), (upper, high))
                }
                raise StableAudioValidationError(
                    f"{lower} ({said[lower]}) must be less than {upper} ({said[upper]})", field=culprit
                )
        # Last: the only check that reads storage.
        audio = None
        if init_audio is not None:
            audio = (
                InputAudio.open(init_audio, spec.input_audio)
                if check_audio
                else InputAudio.described(init_audio)
            )
        return cls(model=model, params=body, mode=mode, init_audio=audio)

    @property
    def service(self) -> str:
        """The service that serves the model: ``"aimlapi"`` or ``"stability"``."""
        return MODELS[self.model].service

    @property
    def asynchronous(self) -> bool:
        """The submit answers with an id to wait for (else its answer is the audio)."""
        return MODELS[self.model].asynchronous

    @property
    def submit_path(self) -> str:
        """The path to submit to, such as ``/v2beta/audio/stable-audio/audio-to-audio``."""
        return MODELS[self.model].submit_path.format(mode=self.mode)

    @property
    def duration_seconds(self) -> float | None:
        """The requested clip length, when the model takes one: given, sent by default, or the
        API's own default (Stability: 190 s)."""
        spec = MODELS[self.model]
        if spec.duration_field is None:
            return None
        length = next(f for f in spec.fields_of(self.mode) if f.name == spec.duration_field)
        return _value_or_api_default(length, self.params)

    def to_json(self) -> dict[str, Any]:
        """The JSON body (the AI/ML API's encoding)."""
        return {"model": self.model, **self.params}

    def form_fields(self) -> list[tuple[str, str]]:
        """The form fields of a multipart body (Stability's encoding): ``model`` first, every value as text.

        The input clip is not among them: it goes as the file part (``audio``). A mode whose path
        alone names the model (Stable Audio 2.5's inpaint) gets no ``model`` field.
        """
        named = [("model", self.model)] if MODELS[self.model].names_model(self.mode) else []
        return named + [(name, _form_text(value)) for name, value in self.params.items()]

    def fingerprint(self) -> str:
        """A short digest of the request: tells whether a later try asks for the same clip.

        Covers the body, the mode and the input clip's location and size; a text-to-audio request
        without input keeps the digest of the body alone (as before modes existed).
        """
        document: dict[str, Any] = self.to_json()
        if self.mode != TEXT_TO_AUDIO:
            document["mode"] = self.mode
        if self.init_audio is not None:
            document["init_audio"] = {"location": self.init_audio.location, "size": self.init_audio.size}
        body = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _form_text(value: Any) -> str:
    return value if isinstance(value, str) else number_text(value)


def _value_or_api_default(spec_field: Field, body: Mapping[str, Any]) -> Any:
    """The value ``body`` sends for the field, else what the API assumes when it is left out."""
    if spec_field.name in body:
        return body[spec_field.name]
    return spec_field.api_default if isinstance(spec_field, FloatField | IntField) else None


def _elsewhere(spec: ModelSpec, mode: str) -> str:
    """Which models of the same service run in ``mode``, for a message about one that does not."""
    others = [name for name in models_with_mode(spec.service, mode) if name != spec.model_id]
    if not others:
        return ""
    return f"; the models that run in mode {mode!r}: " + " or ".join(f"model={name!r}" for name in others)


def _unknown_fields(spec: ModelSpec, unknown: list[str]) -> StableAudioValidationError:
    """The error for fields ``spec`` does not take; a field of a mode the model lacks says which
    models have that mode (``mask_start`` on Stable Audio 2: Stable Audio 2.5 inpaints)."""
    name = unknown[0]
    lacking = [mode for mode in mode_owners(spec.service, name) if mode not in spec.modes]
    if lacking:
        return StableAudioValidationError(
            f"{name} is a field of mode {lacking[0]!r}, which model {spec.model_id!r} does not run in "
            f"(its modes: {list(spec.modes)}){_elsewhere(spec, lacking[0])}",
            field=name,
        )
    return StableAudioValidationError(
        f"unknown field(s) {unknown} for model {spec.model_id!r}; allowed fields: {sorted(spec.field_names)}",
        field=name,
    )


def _settle_mode(spec: ModelSpec, mode: Any, given: Mapping[str, Any], *, has_audio: bool) -> str:
    """The mode ``mode`` names or the fields imply; raises when the fields do not fit it."""
    audio_modes = [m for m in spec.modes if m in INPUT_AUDIO_MODES]
    if has_audio and not audio_modes:
        raise StableAudioValidationError(
            f"init_audio is not taken by model {spec.model_id!r}: it runs in mode(s) {list(spec.modes)} only",
            field="init_audio",
        )
    mask = next((name for name in ("mask_start", "mask_end") if name in given), None)
    if mode is not None:
        if not isinstance(mode, str) or mode.strip() not in spec.modes:
            hint = _elsewhere(spec, mode.strip()) if isinstance(mode, str) else ""
            raise StableAudioValidationError(
                f"mode must be one of {list(spec.modes)} for model {spec.model_id!r}, got {mode!r}{hint}",
                field="mode",
            )
        mode, why = mode.strip(), "given as mode="
    elif not has_audio:
        mode, why = TEXT_TO_AUDIO, "no init_audio was given"
    else:
        mode = INPAINT if mask else AUDIO_TO_AUDIO
        why = f"inferred from init_audio with {mask}" if mask else "inferred from init_audio without a mask"
    for name in sorted(given):
        owners = spec.modes_of_field(name)
        if not owners or mode in owners:
            continue
        owner = " or ".join(repr(m) for m in owners)
        if why == "no init_audio was given":
            problem = f"{name} is a field of mode {owner}, which transforms init_audio, and {why}"
            hint = f"give init_audio, or leave {name} out"
        else:
            problem = f"{name} is a field of mode {owner}, not of mode {mode!r} ({why})"
            hint = (
                f"{name} and {mask} do not go together, leave one out"
                if why.startswith("inferred") and mask
                else f"leave {name} out, or give mode={owners[0]!r}"
            )
        raise StableAudioValidationError(f"{problem}: {hint}", field=name)
    if mode in INPUT_AUDIO_MODES and not has_audio:
        raise StableAudioValidationError(
            f"init_audio is required in mode {mode!r} (the clip to transform)", field="init_audio"
        )
    if mode not in INPUT_AUDIO_MODES and has_audio:
        raise StableAudioValidationError(
            f"init_audio is not taken in mode {mode!r} ({why}): leave it out, "
            f"or give mode= one of {audio_modes}",
            field="init_audio",
        )
    return mode


def returned_fields(returned: Any, *, model: Any = DEFAULT_MODEL) -> dict[str, Any]:
    """The request fields in what a ``@task.stable_audio`` function returned.

    :param returned: the prompt (a string) or a dict of request fields (``prompt``, ``model``, ...;
        ``init_audio`` and ``mode`` too for a model that transforms clips).
    :param model: the task's model (resolved), whose fields a dict without ``model`` may hold.
    :raises StableAudioValidationError: anything else, naming what was returned and what is allowed.
    """
    if isinstance(returned, str):
        return {"prompt": returned}
    asked = returned.get("model", model) if isinstance(returned, dict) else model
    # An unknown model is GenerationRequest.build's to report, with the models there are.
    spec = MODELS.get(asked) if isinstance(asked, str) else None
    shown = spec or MODELS[DEFAULT_MODEL]
    extra = {"init_audio", "mode"} if shown.takes_input_audio else set()
    allowed = sorted({"model", *shown.field_names, *extra})
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
