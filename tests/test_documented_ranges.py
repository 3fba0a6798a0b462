"""docs/choosing-a-service.md states each Stability field's range as the model registry holds it."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_stableaudio.models import (
    MODELS,
    ChoiceField,
    FloatField,
    IntField,
    number_text,
)
from airflow_provider_stableaudio.services import STABILITY

DOC = Path(__file__).resolve().parent.parent / "docs" / "choosing-a-service.md"
ROWS = ("duration", "steps", "cfg_scale", "seed", "output_format", "strength", "mask_start", "mask_end")


def cell(model: str, name: str) -> str:
    """What the table says of field ``name`` on ``model``, from the registry."""
    spec = MODELS[model]
    modes = [mode for mode in spec.modes if name in {f.name for f in spec.fields_of(mode)}]
    if not modes:
        owners = {mode for other in MODELS.values() for mode in other.modes_of_field(name)}
        return f"no {' / '.join(sorted(owners))}"
    (field,) = {f for f in spec.fields_of(modes[0]) if f.name == name}
    if isinstance(field, ChoiceField):
        text = ", ".join(f"`{c}`" + (" (default)" if c == field.default else "") for c in field.choices)
    else:
        assert isinstance(field, IntField | FloatField)
        text = f"{number_text(field.minimum)}..{number_text(field.maximum)}"
        if field.api_default is not None:
            text += f", default {number_text(field.api_default)}"
    # A field most modes take but not all (cfg_scale on 2.5): the modes without it.
    lacking = [mode for mode in spec.modes if mode not in modes]
    return text + (f"; not on {', '.join(lacking)}" if lacking and len(modes) > 1 else "")


def table() -> str:
    models = [name for name, spec in MODELS.items() if spec.service == STABILITY]
    lines = [
        "| field | " + " | ".join(f"`{m}`" for m in models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for name in ROWS:
        lines.append(f"| `{name}` | " + " | ".join(cell(m, name) for m in models) + " |")
    lines.append("| sends `model` | " + " | ".join(sends_model(m) for m in models) + " |")
    return "\n".join(lines)


def sends_model(model: str) -> str:
    spec = MODELS[model]
    unnamed = [mode for mode in spec.modes if not spec.names_model(mode)]
    return f"yes, but not on {', '.join(unnamed)}" if unnamed else "yes"


def test_the_documented_stability_ranges_are_the_registrys() -> None:
    assert table() in DOC.read_text(), "docs/choosing-a-service.md: paste this table\n" + table()
