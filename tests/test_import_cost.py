"""DAG files import the provider at parse time: no HTTP client at import, no Airflow in the pure core."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def modules_after_import(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "module",
    [
        "airflow_provider_stableaudio.operators.stable_audio",
        "airflow_provider_stableaudio.sensors.stable_audio",
        "airflow_provider_stableaudio.decorators.stable_audio",
    ],
)
def test_dag_facing_modules_import_no_http_client(module: str) -> None:
    # Airflow's own SDK loads httpx; what counts is what the provider adds on top of it.
    added = modules_after_import(f"import {module}") - modules_after_import("import airflow.sdk")
    added_packages = {name.split(".")[0] for name in added}
    assert not {"requests", "aiohttp", "httpx", "urllib3", "yarl", "multidict"} & added_packages


@pytest.mark.parametrize(
    "module",
    [
        "generation_request",
        "generation_result",
        "events",
        "api_errors",
        "settings",
        "exceptions",
        "download",
        "retry_policy",
        "lineage",
        "models",
        "input_audio",
        "audio_length",
        "stability_result",
        "untrusted_url",
        "request_budget",
        "machine_schedule",
        "poll_planner",
        "budget_queue",
    ],
)
def test_pure_core_imports_nothing_from_airflow(module: str) -> None:
    loaded = modules_after_import(f"import airflow_provider_stableaudio.{module}")
    assert not {m for m in loaded if m == "airflow" or m.startswith("airflow.")}


def test_the_triggerer_loads_the_trigger_without_the_hooks() -> None:
    # The triggerer imports a trigger's module on its event loop: the hooks (the models, the request
    # budget, requests' exceptions) come later, in a worker thread (the trigger's first run).
    loaded = modules_after_import("import airflow_provider_stableaudio.triggers.stable_audio")
    assert not {m for m in loaded if m.startswith("airflow_provider_stableaudio.hooks")}
    assert "requests" not in loaded


def test_operator_and_sensor_never_import_each_other() -> None:
    operator, sensor = (
        "airflow_provider_stableaudio.operators.stable_audio",
        "airflow_provider_stableaudio.sensors.stable_audio",
    )
    assert sensor not in modules_after_import(f"import {operator}")
    assert operator not in modules_after_import(f"import {sensor}")


@pytest.mark.parametrize(
    "module",
    [
        "airflow_provider_stableaudio.operators.stable_audio",
        "airflow_provider_stableaudio.sensors.stable_audio",
        "airflow_provider_stableaudio.decorators.stable_audio",
    ],
)
def test_dag_facing_modules_import_no_openlineage(module: str) -> None:
    # The OpenLineage provider is optional: only get_openlineage_facets_on_complete imports it.
    added = modules_after_import(f"import {module}") - modules_after_import("import airflow.sdk")
    assert not {m for m in added if "openlineage" in m}


def test_every_process_loading_the_clips_plugin_skips_its_web_app() -> None:
    # Workers, the scheduler and the triggerer load plugins too: only the API server builds the app.
    loaded = modules_after_import("import airflow_provider_stableaudio.plugins.clips")
    assert "airflow_provider_stableaudio.plugins.clips.app" not in loaded
