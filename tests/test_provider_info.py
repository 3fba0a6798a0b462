"""Registration with Airflow: entry point, provider-info schema, connection form, providers manager."""

from __future__ import annotations

import json
from importlib.metadata import entry_points, version
from pathlib import Path

import airflow
import jsonschema

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
    for conn in info["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn["connection-type"] == "stableaudio"
        assert hook.hook_name == conn["hook-name"] == "Stable Audio"


def test_connection_form_reaches_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-stableaudio" in manager.providers
    behaviour = manager.field_behaviours["stableaudio"]
    assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}
    assert behaviour["placeholders"]["host"] == "https://api.aimlapi.com"
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    assert "extra__stableaudio__timeout" in manager.connection_form_widgets
    assert manager.hooks["stableaudio"].hook_class_name.endswith("StableAudioHook")  # type: ignore[union-attr]


def test_airflow_cli_lists_the_provider_and_its_connection_type() -> None:
    import subprocess
    import sys

    airflow_cli = [sys.executable, "-m", "airflow"]
    providers = subprocess.run(
        [*airflow_cli, "providers", "list", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert "airflow-provider-stableaudio" in {p["package_name"] for p in json.loads(providers.stdout)}
    hooks = subprocess.run(
        [*airflow_cli, "providers", "hooks", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert "stableaudio" in {h["connection_type"] for h in json.loads(hooks.stdout)}
