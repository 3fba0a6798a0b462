"""The "Clips" page: every clip the provider delivered, playable and filterable, in Airflow's UI.

Registered through the ``airflow.plugins`` entry point (so it loads whatever
``[core] lazy_discover_providers`` says). The API server mounts the FastAPI app of
:mod:`.app` at ``/stableaudio-clips``; the UI shows it as an external view under Browse, and as a
tab on task instances. ``[stableaudio] clips_page = False`` turns it all off.

Every Airflow process loads plugins (workers too, for macros): this module imports nothing heavy,
and the app is built only when the API server asks for it.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: Where the API server mounts the app, below its own base URL.
URL_PREFIX = "/stableaudio-clips"
# Relative hrefs (no leading slash) resolve against the UI's <base href>: they work under a base_url
# sub-path. The task instance tab carries the ids in the path (see app.task_page).
PAGE_HREF = f"{URL_PREFIX.lstrip('/')}/ui/"
TASK_HREF = f"{URL_PREFIX.lstrip('/')}/ui/ti/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}/{{MAP_INDEX}}"
CONFIG_SECTION = "stableaudio"
CONFIG_KEY = "clips_page"
# An icon of a note, as a data URL: the page needs no file of its own for it.
ICON = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' "
    "stroke='%23888' stroke-width='2' stroke-linecap='round' stroke-linejoin='round'>"
    "<path d='M9 18V5l12-2v13'/>"
    "<circle cx='6' cy='18' r='3'/><circle cx='18' cy='16' r='3'/></svg>"
)


def clips_page_enabled() -> bool:
    """Whether the page is on: ``[stableaudio] clips_page`` (``AIRFLOW__STABLEAUDIO__CLIPS_PAGE``)."""
    from airflow.configuration import conf

    return conf.getboolean(CONFIG_SECTION, CONFIG_KEY, fallback=True)


class StableAudioClipsPlugin(AirflowPlugin):
    """The Clips page: a FastAPI app, a Browse menu entry and a task instance tab."""

    name = "stableaudio_clips"

    # Properties, not lists: the app is built only when the API server asks for it.
    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        if not clips_page_enabled():
            return []
        from airflow_provider_stableaudio.plugins.clips.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Stable Audio clips"}]

    @property
    def external_views(self) -> list[dict[str, Any]]:  # type: ignore[override]
        if not clips_page_enabled():
            return []
        return [
            {
                "name": "Clips",
                "href": PAGE_HREF,
                "category": "Browse",
                "url_route": "stableaudio-clips",
                "icon": ICON,
                "destination": "nav",
            },
            {
                "name": "Stable Audio clip",
                "href": TASK_HREF,
                "url_route": "stableaudio-clip",
                "icon": ICON,
                "destination": "task_instance",
            },
        ]
