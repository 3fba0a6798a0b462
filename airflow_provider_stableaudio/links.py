"""The "Stable Audio clip" button on a task's page: opens the generated audio."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow.sdk import BaseOperatorLink

from airflow_provider_stableaudio.delivery import AUDIO_FILE_XCOM

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class StableAudioClipLink(BaseOperatorLink):
    """Link to the audio URL of the generation the task completed (empty until then, and for a URL
    that is not http(s): the API's answer is not trusted to put ``javascript:`` in the UI)."""

    name = "Stable Audio clip"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # The worker computes links whenever a try ends, deferrals and reschedules included. Only a
        # successful try that waited for the clip has pushed it: asking for the XCom otherwise makes
        # Airflow's API client log "XCom not found" at error level, once per deferral.
        state = getattr(ti_key, "state", None)
        submitted_only = getattr(operator, "wait_for_completion", True) is False
        if submitted_only or (state is not None and state != "success"):
            return ""
        from airflow.providers.common.compat.sdk import XCom

        audio_file = XCom.get_value(ti_key=ti_key, key=AUDIO_FILE_XCOM)
        url = audio_file.get("url") if isinstance(audio_file, dict) else None
        return url.strip() if isinstance(url, str) and _is_web_url(url.strip()) else ""


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
