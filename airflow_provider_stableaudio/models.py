"""The model registry: which service serves each Stable Audio model, its modes, fields and ranges.

Models are data (:data:`MODELS`): another model, or a corrected range, is an entry here, not new code.
Points of Stability's contract that are not confirmed (``../shared/api/stability-audio-contract.md``)
are marked *unconfirmed* beside the value that rests on them. No Airflow imports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.exceptions import StableAudioValidationError
from airflow_provider_stableaudio.input_audio import InputAudioLimits
from airflow_provider_stableaudio.services import AIMLAPI, SERVICES, STABILITY

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TypeAlias

TEXT_TO_AUDIO = "text-to-audio"
AUDIO_TO_AUDIO = "audio-to-audio"
INPAINT = "inpaint"
#: The modes that transform an input clip: they need ``init_audio``.
INPUT_AUDIO_MODES = frozenset({AUDIO_TO_AUDIO, INPAINT})

# A whole number written as text, as a template such as "{{ params.seconds }}" renders it.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# A decimal number written as text, as str() renders a float ("0.5", "7.0", "1e-05").
_DECIMAL_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def number_text(value: float) -> str:
    """``value`` as the API and messages read it: ``7`` for 7.0, ``0.5``, never an exponent."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    # 1e-05 -> 0.00001: a form field is read as a plain decimal.
    return format(Decimal(text), "f") if "e" in text else text


def _type_error(name: str, allowed: str, value: Any) -> StableAudioValidationError:
    return StableAudioValidationError(
        f"{name} must be {allowed}, got {value!r} ({type(value).__name__})", field=name
    )


@dataclass(frozen=True)
class IntField:
    """An integer request field with an inclusive range.

    :param name: the field's name in the request body.
    :param minimum: smallest allowed value.
    :param maximum: largest allowed value.
    :param default: value sent when the caller gives none; ``None`` leaves the field out.
    :param required: whether the caller must give it.
    :param api_default: the value the API assumes when the field is left out (not sent).
    """

    name: str
    minimum: int
    maximum: int
    default: int | None = None
    required: bool = False
    api_default: int | None = None

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
            raise _type_error(self.name, allowed, value)
        if not self.minimum <= value <= self.maximum:
            raise StableAudioValidationError(f"{self.name} must be {allowed}, got {value}", field=self.name)
        return value


@dataclass(frozen=True)
class FloatField:
    """A number request field (fractions allowed) with an inclusive range.

    :param name: the field's name in the request body.
    :param minimum: smallest allowed value.
    :param maximum: largest allowed value.
    :param default: value sent when the caller gives none; ``None`` leaves the field out.
    :param required: whether the caller must give it.
    :param api_default: the value the API assumes when the field is left out (not sent; used to
        check the field against others, and to report what was asked for).
    """

    name: str
    minimum: float
    maximum: float
    default: float | None = None
    required: bool = False
    api_default: float | None = None

    def check(self, value: Any) -> float:
        """``value`` in range: an int, a float, or a string holding one (``"0.5"``, ``"7"``).

        An int stays an int (sent as ``7``); ``nan``, ``inf``, ``True`` and ``"half"`` do not pass.
        """
        allowed = f"a number from {number_text(self.minimum)} to {number_text(self.maximum)}"
        if isinstance(value, str) and _DECIMAL_NUMBER.fullmatch(value.strip()):
            value = int(value) if _WHOLE_NUMBER.fullmatch(value.strip()) else float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(self.name, allowed, value)
        # nan compares false with everything, so the range check alone lets it through.
        if not (math.isfinite(value) and self.minimum <= value <= self.maximum):
            raise StableAudioValidationError(
                f"{self.name} must be {allowed}, got {number_text(value)}", field=self.name
            )
        return value


@dataclass(frozen=True)
class ChoiceField:
    """A request field taking one of a fixed set of strings.

    :param name: the field's name in the request body.
    :param choices: the allowed values.
    :param default: value sent when the caller gives none; ``None`` leaves the field out.
    :param required: whether the caller must give it.
    """

    name: str
    choices: tuple[str, ...]
    default: str | None = None
    required: bool = False

    def check(self, value: Any) -> str:
        """``value`` if it is one of the choices (surrounding blanks, as templates leave them, ignored)."""
        text = value.strip() if isinstance(value, str) else value
        if text not in self.choices:
            kind = "" if isinstance(value, str) else f" ({type(value).__name__})"
            raise StableAudioValidationError(
                f"{self.name} must be one of {list(self.choices)}, got {value!r}{kind}", field=self.name
            )
        return str(text)


@dataclass(frozen=True)
class TextField:
    """A string request field that may not be empty or blank.

    :param name: the field's name in the request body.
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
            raise _type_error(self.name, f"a non-empty string{limit}", value)
        if not value.strip():
            raise StableAudioValidationError(
                f"{self.name} must be a non-empty string{limit}, got {value!r}", field=self.name
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise StableAudioValidationError(
                f"{self.name} must be a non-empty string{limit}, got {len(value)} characters", field=self.name
            )
        return value


Field: TypeAlias = "IntField | FloatField | ChoiceField | TextField"


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts, and where it is served.

    :param model_id: the ``model`` value sent to the API.
    :param fields: the fields it accepts in every mode, besides ``model``.
    :param not_after: pairs ``(a, b)`` where field ``a`` may not exceed field ``b``.
    :param duration_field: the field that holds the clip's length in seconds, if any.
    :param service: the service that serves it (a key of :data:`.services.SERVICES`).
    :param asynchronous: the submit answers with an id to poll (else the answer is the audio).
    :param submit_path: the path to submit to; ``{mode}`` stands for the mode.
    :param mode_fields: each mode the model runs in, with the fields only that mode takes (a field
        may belong to several modes).
    :param before: pairs ``(a, b)`` where field ``a`` must be less than field ``b`` (the API's
        default of a field left out counts).
    :param unnamed_modes: modes whose request carries no ``model`` field: their path alone names
        the model.
    :param access_flag: the feature flag the service's API document puts on the model's paths when
        it grants the model per account.
    :param input_audio: what it takes as ``init_audio`` (size and length), for models that
        transform clips.
    """

    model_id: str
    fields: tuple[Field, ...]
    not_after: tuple[tuple[str, str], ...] = ()
    duration_field: str | None = None
    service: str = AIMLAPI
    asynchronous: bool = True
    submit_path: str = "/v2/generate/audio"
    mode_fields: Mapping[str, tuple[Field, ...]] = field(default_factory=lambda: {TEXT_TO_AUDIO: ()})
    before: tuple[tuple[str, str], ...] = ()
    unnamed_modes: frozenset[str] = frozenset()
    access_flag: str | None = None
    input_audio: InputAudioLimits | None = None
    field_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        every = self.fields + tuple(f for fields in self.mode_fields.values() for f in fields)
        object.__setattr__(self, "field_names", frozenset(f.name for f in every))

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes it runs in, text-to-audio first."""
        return tuple(self.mode_fields)

    @property
    def takes_input_audio(self) -> bool:
        return bool(INPUT_AUDIO_MODES & set(self.mode_fields))

    def fields_of(self, mode: str) -> tuple[Field, ...]:
        """Every field ``mode`` takes: the common ones, then the mode's own."""
        return self.fields + self.mode_fields[mode]

    def modes_of_field(self, name: str) -> tuple[str, ...]:
        """The modes whose own field ``name`` is; empty for a common field (or an unknown one)."""
        return tuple(mode for mode, fields in self.mode_fields.items() if name in {f.name for f in fields})

    def names_model(self, mode: str) -> bool:
        """Whether a request in ``mode`` carries the ``model`` field."""
        return mode not in self.unnamed_modes


#: The model a task uses when it names none, per service.
DEFAULT_MODELS: dict[str, str] = {AIMLAPI: "stable-audio", STABILITY: "stable-audio-3"}

# Stability, as its OpenAPI document publishes each field (``stability-audio-contract.md``): prompt
# 1..10000 characters; seed 0 means random; output_format mp3 is the API's own default, sent so the
# request says what comes back. Lengths, masks, cfg_scale and strength are numbers (12.5 s is valid).
_PROMPT = TextField("prompt", max_length=10000, required=True)
_SEED = IntField("seed", 0, 4294967294)
_OUTPUT_FORMAT = ChoiceField("output_format", ("mp3", "wav"), default="mp3")
_CFG_SCALE = FloatField("cfg_scale", 1, 25, api_default=1)
# Left out, the API makes a clip of 190 s, on every Stability model.
_DEFAULT_SECONDS = 190


def _duration(maximum: float) -> FloatField:
    return FloatField("duration", 1, maximum, api_default=_DEFAULT_SECONDS)


def _steps(minimum: int, maximum: int, api_default: int) -> IntField:
    return IntField("steps", minimum, maximum, api_default=api_default)


def _mask(maximum: float) -> tuple[Field, ...]:
    """The span inpaint regenerates, in seconds of the clip; left out: from 30 s to the bound."""
    return (
        FloatField("mask_start", 0, maximum, api_default=30),
        FloatField("mask_end", 0, maximum, api_default=maximum),
    )


MB = 1000 * 1000
_STABILITY_ASYNC_PATH = "/v2beta/audio/stable-audio/{mode}"  # 202 + id, then GET /v2beta/audio/results/{id}
_STABILITY_SYNC_PATH = "/v2beta/audio/stable-audio-2/{mode}"  # 200 + the audio: the call is the wait

MODELS: dict[str, ModelSpec] = {
    "stable-audio": ModelSpec(
        model_id="stable-audio",
        fields=(
            TextField("prompt", required=True),
            IntField("seconds_total", 1, 47, default=30),
            # Every published version of the schema (2025-02 to 2026-07) says 1..47; 0 is in none.
            IntField("seconds_start", 1, 47),
            IntField("steps", 1, 1000, default=100),
        ),
        not_after=(("seconds_start", "seconds_total"),),
        duration_field="seconds_total",
    ),
    "stable-audio-3": ModelSpec(
        model_id="stable-audio-3",
        fields=(_PROMPT, _duration(380), _SEED, _steps(4, 8, 8), _CFG_SCALE, _OUTPUT_FORMAT),
        duration_field="duration",
        service=STABILITY,
        asynchronous=True,
        submit_path=_STABILITY_ASYNC_PATH,
        mode_fields={
            TEXT_TO_AUDIO: (),
            AUDIO_TO_AUDIO: (FloatField("strength", 0, 1, api_default=1),),
            INPAINT: _mask(380),
        },
        before=(("mask_start", "mask_end"),),
        access_flag="allow-access-stable-audio-3-api",
        # "The maximum request size is 100 MB" (read as 10**6 bytes, the stricter reading).
        input_audio=InputAudioLimits("stable-audio-3", max_bytes=100 * MB, min_seconds=6, max_seconds=380),
    ),
    "stable-audio-2.5": ModelSpec(
        model_id="stable-audio-2.5",
        fields=(_PROMPT, _duration(190), _SEED, _steps(4, 8, 8), _OUTPUT_FORMAT),
        duration_field="duration",
        service=STABILITY,
        asynchronous=False,
        submit_path=_STABILITY_SYNC_PATH,
        mode_fields={
            TEXT_TO_AUDIO: (_CFG_SCALE,),
            AUDIO_TO_AUDIO: (_CFG_SCALE, FloatField("strength", 0.01, 1)),
            # Stable Audio 2.5 only: its path names the model, and it takes no cfg_scale.
            INPAINT: _mask(190),
        },
        before=(("mask_start", "mask_end"),),
        unnamed_modes=frozenset({INPAINT}),
        input_audio=InputAudioLimits("stable-audio-2.5", max_bytes=50 * MB, min_seconds=6, max_seconds=190),
    ),
    "stable-audio-2": ModelSpec(
        model_id="stable-audio-2",
        fields=(
            _PROMPT,
            _duration(190),
            _SEED,
            _steps(30, 100, 50),
            FloatField("cfg_scale", 1, 25, api_default=7),
            _OUTPUT_FORMAT,
        ),
        duration_field="duration",
        service=STABILITY,
        asynchronous=False,
        submit_path=_STABILITY_SYNC_PATH,
        # No inpaint: /v2beta/audio/stable-audio-2/inpaint is Stable Audio 2.5's alone.
        mode_fields={TEXT_TO_AUDIO: (), AUDIO_TO_AUDIO: (FloatField("strength", 0, 1),)},
        input_audio=InputAudioLimits("stable-audio-2", max_bytes=50 * MB, min_seconds=6, max_seconds=190),
    ),
}


def models_with_mode(service: str, mode: str) -> list[str]:
    """The models of ``service`` that run in ``mode``, sorted."""
    return sorted(name for name, spec in MODELS.items() if spec.service == service and mode in spec.modes)


def mode_owners(service: str, name: str) -> list[str]:
    """The modes in which some model of ``service`` takes field ``name`` as its own."""
    specs = [spec for spec in MODELS.values() if spec.service == service]
    return sorted({mode for spec in specs for mode in spec.modes_of_field(name)})


def unknown_model_message(model: Any) -> str:
    """``model must be one of ...`` with the models of each service and the connection type each needs."""
    groups = " or ".join(
        f"{sorted(m for m, spec in MODELS.items() if spec.service == name)} "
        f"({service.title}, connection type {service.conn_type!r})"
        for name, service in SERVICES.items()
        if any(spec.service == name for spec in MODELS.values())
    )
    return f"model must be one of {groups}, got {model!r}"


def spec_of(model: Any) -> ModelSpec:
    """The registry entry of ``model``.

    :raises StableAudioValidationError: an unknown model, listing the known ones per service.
    """
    spec = MODELS.get(model) if isinstance(model, str) else None
    if spec is None:
        raise StableAudioValidationError(unknown_model_message(model), field="model")
    return spec


def service_of(model: str) -> str:
    """The service that serves ``model`` (``"aimlapi"`` or ``"stability"``)."""
    return spec_of(model).service


def default_model(service: str) -> str:
    """The model a task of ``service`` uses when it names none."""
    try:
        return DEFAULT_MODELS[service]
    except KeyError:
        raise ValueError(f"unknown service {service!r}; services: {sorted(DEFAULT_MODELS)}") from None
