"""Registration with Airflow: entry point, provider-info schema, connection form, providers manager."""

from __future__ import annotations

import json
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest

import airflow_provider_stableaudio
from airflow_provider_stableaudio.get_provider_info import get_provider_info


def test_entry_point_points_at_get_provider_info() -> None:
    (entry,) = [
        e
        for e in entry_points(group="apache_airflow_provider")
        if e.dist and e.dist.name == "airflow-provider-stableaudio"
    ]
    assert entry.load() is get_provider_info


def test_version_is_single_sourced() -> None:
    assert version("airflow-provider-stableaudio") == airflow_provider_stableaudio.__version__
    assert get_provider_info()["versions"] == [airflow_provider_stableaudio.__version__]


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_listed_module_imports() -> None:
    import importlib

    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for decorator in info["task-decorators"]:
        module, _, name = decorator["class-name"].rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))
    hooks = {}
    for conn in info["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"]
        assert hook.hook_name == conn["hook-name"]
        assert hook.default_conn_name == hook().conn_id
        hooks[hook.conn_type] = hook.hook_name
    assert hooks == {"stableaudio": "Stable Audio", "stability": "Stability AI (Stable Audio)"}


# Airflow >= 3.2 reads the connection form from the provider info (``ui-field-behaviour`` and the
# typed ``conn-fields``). Older releases call the hook's ``get_ui_field_behaviour()`` instead and show
# no typed extra fields (below the pyproject's lower bound today; kept for whoever lowers it).
FORM_FROM_PROVIDER_INFO = tuple(int(part) for part in airflow.__version__.split(".")[:2]) >= (3, 2)


@pytest.mark.skipif(not FORM_FROM_PROVIDER_INFO, reason="Airflow < 3.2 reads the form from the hook")
def test_connection_form_reaches_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-stableaudio" in manager.providers
    behaviour = manager.field_behaviours["stableaudio"]
    assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}
    assert behaviour["placeholders"]["host"] == "https://api.aimlapi.com"
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    assert "extra__stableaudio__timeout" in manager.connection_form_widgets
    assert "extra__stableaudio__max_download_bytes" in manager.connection_form_widgets
    assert manager.hooks["stableaudio"].hook_class_name.endswith("StableAudioHook")  # type: ignore[union-attr]
    stability = manager.field_behaviours["stability"]
    assert stability["placeholders"]["host"] == "https://api.stability.ai"
    assert {"schema", "port", "login"} <= set(stability["hidden_fields"])
    assert "extra__stability__timeout" in manager.connection_form_widgets
    assert manager.hooks["stability"].hook_class_name.endswith("StabilityAudioHook")  # type: ignore[union-attr]


@pytest.mark.skipif(FORM_FROM_PROVIDER_INFO, reason="Airflow >= 3.2 reads the form from the provider info")
def test_connection_form_falls_back_to_the_hook_before_airflow_3_2() -> None:
    """Airflow < 3.2: the UI's form comes from the hook's ``get_ui_field_behaviour()``, no typed extras.

    Asked the way the UI's API server asks (its hook-meta service), in a subprocess: that service
    puts stand-ins for wtforms and Flask-AppBuilder into ``sys.modules`` when they are missing.
    """
    import importlib.util
    import subprocess
    import sys

    from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
    from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook

    behaviour = StableAudioHook.get_ui_field_behaviour()
    schema_file = Path(airflow.__file__).parent / "customized_form_field_behaviours.schema.json"
    jsonschema.validate(behaviour, json.loads(schema_file.read_text()))
    jsonschema.validate(StabilityAudioHook.get_ui_field_behaviour(), json.loads(schema_file.read_text()))

    code = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
hooks, widgets, behaviours = HookMetaService._get_hooks_with_mocked_fab()
print(json.dumps({
    "hook": hooks["stableaudio"].hook_class_name,
    "behaviour": behaviours.get("stableaudio"),
    "widgets": sorted(w for w in widgets if "stableaudio" in w),
}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ui = last_line_json(out.stdout)
    assert ui["hook"].endswith("StableAudioHook")
    assert ui["widgets"] == []  # the timeout goes into the Extra JSON there
    if ui["behaviour"] is None:
        # Airflow <= 3.1.2 reads no hook's form at all unless Flask-AppBuilder (wtforms) is installed.
        assert importlib.util.find_spec("wtforms") is None
        return
    assert ui["behaviour"]["relabeling"] == {"password": "API Key", "host": "Base URL"}
    assert ui["behaviour"]["placeholders"]["host"] == "https://api.aimlapi.com"
    assert {"schema", "port", "login"} <= set(ui["behaviour"]["hidden_fields"])


def last_line_json(stdout: str) -> Any:
    """The JSON a command printed last (Airflow 3.0 logs to stdout before it)."""
    return json.loads(stdout.strip().splitlines()[-1])


def test_airflow_cli_lists_the_provider_and_its_connection_type() -> None:
    import subprocess
    import sys

    airflow_cli = [sys.executable, "-m", "airflow"]
    providers = subprocess.run(
        [*airflow_cli, "providers", "list", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert "airflow-provider-stableaudio" in {p["package_name"] for p in last_line_json(providers.stdout)}
    hooks = subprocess.run(
        [*airflow_cli, "providers", "hooks", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert "stableaudio" in {h["connection_type"] for h in last_line_json(hooks.stdout)}
    full = subprocess.run(
        [*airflow_cli, "providers", "get", "airflow-provider-stableaudio", "--full", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    (info,) = last_line_json(full.stdout)
    assert info["task-decorators"] == get_provider_info()["task-decorators"]
