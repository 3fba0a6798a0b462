"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_stableaudio import __version__
from airflow_provider_stableaudio.services import AIMLAPI, SERVICES, STABILITY

INTEGRATION = "Stable Audio"
STABILITY_INTEGRATION = "Stability AI"


def _form(service: str) -> dict[str, Any]:
    """The connection form of ``service``'s connection type: the same fields, its own placeholders."""
    return {
        "hidden_fields": ["schema", "port", "login"],
        "relabeling": {"password": "API Key", "host": "Base URL"},
        "placeholders": {
            "host": SERVICES[service].default_base_url,
            "password": f"your {SERVICES[service].key_name}",
        },
    }


# The Airflow 3 UI draws the connection forms from these, without importing the hooks.
UI_FIELD_BEHAVIOUR = _form(AIMLAPI)
STABILITY_UI_FIELD_BEHAVIOUR = _form(STABILITY)

CONN_FIELDS: dict[str, Any] = {
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "Seconds allowed for each API call (default 30).",
        "schema": {"type": ["number", "null"], "minimum": 1},
    },
    "max_download_bytes": {
        "label": "Largest download (bytes)",
        "description": (
            "The most bytes a clip's download reads when the API reports no size "
            "(default 4294967296, 4 GiB); a longer answer is refused."
        ),
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "max_requests_per_second": {
        "label": "Most requests per second",
        "description": (
            "The most API requests per second each machine sends with this key (its triggerers' "
            "and task processes' together). Default: none for the AI/ML API (adapts to its "
            "429s); 10 for Stability AI (its limit is 150 per 10 s). See the deployment guide."
        ),
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
}


STABILITY_CONN_FIELDS: dict[str, Any] = {
    **CONN_FIELDS,
    "results_served_once": {
        "label": "Results are served once only",
        "description": (
            "Set it if Stability serves a finished result only once: the poll that finds it ready "
            "then stores it, on the worker. Default: off (the triggerer waits, the worker fetches)."
        ),
        "schema": {"type": ["boolean", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's providers manager."""
    return {
        "package-name": "airflow-provider-stableaudio",
        "name": "Stable Audio",
        "description": (
            "Generate music and sound with Stable Audio from Airflow DAGs, on the AI/ML API or on "
            "Stability AI's own API."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://docs.aimlapi.com/api-references/music-models/stability-ai/stable-audio",
                "tags": ["service"],
            },
            {
                "integration-name": STABILITY_INTEGRATION,
                "external-doc-url": "https://platform.stability.ai/docs/api-reference",
                "tags": ["service"],
            },
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_stableaudio.hooks.stable_audio"],
            },
            {
                "integration-name": STABILITY_INTEGRATION,
                "python-modules": ["airflow_provider_stableaudio.hooks.stability"],
            },
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_stableaudio.operators.stable_audio"],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_stableaudio.sensors.stable_audio"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_stableaudio.triggers.stable_audio"],
            }
        ],
        "task-decorators": [
            {
                "name": "stable_audio",
                "class-name": "airflow_provider_stableaudio.decorators.stable_audio.stable_audio_task",
            }
        ],
        "extra-links": ["airflow_provider_stableaudio.links.StableAudioClipLink"],
        "connection-types": [
            {
                "connection-type": "stableaudio",
                "hook-class-name": "airflow_provider_stableaudio.hooks.stable_audio.StableAudioHook",
                "hook-name": "Stable Audio",
                "ui-field-behaviour": {
                    "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
                },
                "conn-fields": CONN_FIELDS,
            },
            {
                "connection-type": "stability",
                "hook-class-name": "airflow_provider_stableaudio.hooks.stability.StabilityAudioHook",
                "hook-name": "Stability AI (Stable Audio)",
                "ui-field-behaviour": {
                    "hidden-fields": STABILITY_UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": STABILITY_UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": STABILITY_UI_FIELD_BEHAVIOUR["placeholders"],
                },
                "conn-fields": STABILITY_CONN_FIELDS,
            },
        ],
    }
