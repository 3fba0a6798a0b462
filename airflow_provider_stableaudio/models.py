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
    """

    name: str
    minimum: float
    maximum: float
    default: float | None = None
    required: bool = False

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
    :param mode_fields: each mode the model runs in, with the fields only that mode takes.
    :param before: pairs ``(a, b)`` where field ``a`` must be less than field ``b``.
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

    def mode_of_field(self, name: str) -> str | None:
        """The mode whose own field ``name`` is; ``None`` for a common field."""
        return next(
            (mode for mode, fields in self.mode_fields.items() if name in {f.name for f in fields}), None
        )


#: The model a task uses when it names none, per service.
DEFAULT_MODELS: dict[str, str] = {AIMLAPI: "stable-audio", STABILITY: "stable-audio-3"}

# Stability: prompt 1..10000 characters (stated for Stable Audio 3; assumed for 2 and 2.5, unconfirmed);
# seed 0 means random; output_format mp3 is the API's own default, sent so the request says what comes back.
_PROMPT = TextField("prompt", max_length=10000, required=True)
_SEED = IntField("seed", 0, 4294967294)
_OUTPUT_FORMAT = ChoiceField("output_format", ("mp3", "wav"), default="mp3")
_CFG_SCALE = FloatField("cfg_scale", 1, 25)
_STRENGTH = FloatField("strength", 0.01, 1)


def _stability_modes(duration_bound: int) -> dict[str, tuple[Field, ...]]:
    # The mask is in seconds of the clip, so bounded like the duration (2.5: 0..190). Left out, the
    # API applies its defaults (2.5: 30..190; unconfirmed for 3).
    return {
        TEXT_TO_AUDIO: (),
        AUDIO_TO_AUDIO: (_STRENGTH,),
        INPAINT: (FloatField("mask_start", 0, duration_bound), FloatField("mask_end", 0, duration_bound)),
    }


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
    "stable-audio-3": ModelSpec(
        model_id="stable-audio-3",
        fields=(
            _PROMPT,
            IntField("duration", 1, 380),
            _SEED,
            IntField("steps", 4, 8),
            _CFG_SCALE,
            _OUTPUT_FORMAT,
        ),
        duration_field="duration",
        service=STABILITY,
        asynchronous=True,  # 202 + id, then GET /v2beta/audio/results/{id}
        submit_path="/v2beta/audio/stable-audio/{mode}",
        # Stable Audio 3's mask bound: its duration bound, by analogy with 2.5 (unconfirmed).
        mode_fields=_stability_modes(380),
        before=(("mask_start", "mask_end"),),
    ),
    "stable-audio-2.5": ModelSpec(
        model_id="stable-audio-2.5",
        fields=(_PROMPT, IntField("duration", 1, 190), _SEED, IntField("steps", 4, 8), _OUTPUT_FORMAT),
        duration_field="duration",
        service=STABILITY,
        asynchronous=False,  # 200 + the audio: the call is the wait
        submit_path="/v2beta/audio/stable-audio-2/{mode}",
        mode_fields=_stability_modes(190),
        before=(("mask_start", "mask_end"),),
    ),
    "stable-audio-2": ModelSpec(
        model_id="stable-audio-2",
        fields=(
            _PROMPT,
            IntField("duration", 1, 190),
            _SEED,
            IntField("steps", 30, 100),  # "2.0 takes more" steps: this range is unconfirmed
            _CFG_SCALE,  # taken by 2.0 only: unconfirmed, range as Stable Audio 3's
            _OUTPUT_FORMAT,  # the endpoint shared with 2.5 takes it
        ),
        duration_field="duration",
        service=STABILITY,
        asynchronous=False,
        submit_path="/v2beta/audio/stable-audio-2/{mode}",
        mode_fields=_stability_modes(190),
        before=(("mask_start", "mask_end"),),
    ),
}


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
