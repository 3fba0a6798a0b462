"""The Clips page's FastAPI app, mounted by Airflow's API server (``fastapi_apps``).

A mounted app inherits none of Airflow's authentication: every route here depends on ``get_user``
(a Bearer token, or the UI's ``_token`` cookie, which the page's same-origin iframe sends), and
asks the auth manager (``get_auth_manager()``: ``request.app.state`` is this app's, not Airflow's)
which DAGs the user may read. The page is static HTML with plain JavaScript: no build step.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

# FastAPI reads the routes' annotations at run time: GetUserDep must be importable, not TYPE_CHECKING.
from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from airflow_provider_stableaudio.plugins.clips import audio, records

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

#: The files of ``static/`` the app serves, by name: a request names one of these, never a path.
STATIC_FILES = {"clips.js": "text/javascript", "clips.css": "text/css"}
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def may_read_clips(user: BaseUser, dag_id: str) -> bool:
    """Whether ``user`` may read the DAG's XComs, which is what a clip is."""
    return bool(
        get_auth_manager().is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.XCOM, details=DagDetails(id=dag_id), user=user
        )
    )


def readable_dag_ids(user: BaseUser, *, only: str | None = None) -> set[str]:
    """The DAGs whose clips ``user`` may see (all of them, or just ``only``)."""
    if only is not None:
        return {only} if may_read_clips(user, only) else set()
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _page(base: str) -> HTMLResponse:
    """The page, with ``base`` (the way from the route back to the app's root) as its ``<base href>``:
    every URL in it is relative, so it works under any ``base_url`` sub-path and behind any proxy."""
    html = files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace("{{BASE}}", base), headers=_NO_STORE)


def _url_expired(url: str) -> bool:
    """Whether a signed URL says it has expired (``Expires=`` epoch, or AWS's date and lifetime)."""
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    now = time.time()
    try:
        if "expires" in query:
            return float(query["expires"]) < now
        if "x-amz-date" in query and "x-amz-expires" in query:
            signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return signed.timestamp() + float(query["x-amz-expires"]) < now
    except ValueError:
        return False
    return False


def _playable(clip: records.Clip) -> dict[str, Any]:
    """How the page plays ``clip``: through this app, from its public URL, or not at all (and why)."""
    if clip.location:
        if audio.is_remote(clip.location):
            # Checked when played: the listing does not wait on a store for every clip.
            return {"via": "server", "problem": None, "seconds": None}
        try:
            source = audio.open_recorded(clip.location, recorded_size=clip.audio_file.get("file_size"))
        except audio.ClipUnavailable as gone:
            return {"via": None, "problem": str(gone), "seconds": None}
        return {"via": "server", "problem": None, "seconds": source.seconds()}
    url = clip.url
    if url is None:
        return {"via": None, "problem": "The clip was not stored and has no URL.", "seconds": None}
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return {"via": None, "problem": "The clip's URL is not a web address.", "seconds": None}
    if _url_expired(url):
        return {"via": None, "problem": "The clip's URL has expired and it was not stored.", "seconds": None}
    return {"via": "url", "problem": None, "seconds": None}


def clip_json(clip: records.Clip) -> dict[str, Any]:
    """What the page shows of a clip."""
    play = _playable(clip)
    seconds = play["seconds"] if play["seconds"] is not None else clip.requested_seconds
    src = None
    if play["via"] == "server":
        src = f"api/clips/{clip.key.clip_id}/audio"
    elif play["via"] == "url":
        src = clip.url
    return {
        "id": clip.key.clip_id,
        "dag_id": clip.dag_id,
        "run_id": clip.run_id,
        "task_id": clip.key.task_id,
        "map_index": clip.key.map_index,
        "created": clip.created.isoformat(),
        "prompt": clip.prompt,
        "model": clip.model,
        "service": clip.service,
        "seconds": round(seconds, 3) if seconds is not None else None,
        "credits": clip.credits,
        "file_name": clip.audio_file.get("file_name"),
        "file_size": clip.audio_file.get("file_size"),
        "generation_id": clip.audio_file.get("generation_id"),
        "stored": clip.location is not None,
        "src": src,
        "problem": play["problem"],
    }


def _listing(clips: list[records.Clip], user: BaseUser) -> dict[str, Any]:
    allowed: dict[str, bool] = {}
    shown = []
    for clip in clips:
        if clip.dag_id not in allowed:
            allowed[clip.dag_id] = may_read_clips(user, clip.dag_id)
        if allowed[clip.dag_id]:
            shown.append(clip_json(clip))
    return {
        "clips": shown,
        "total_clips": len(shown),
        "total_credits": sum(c["credits"] for c in shown if c["credits"] is not None),
    }


def _date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(status_code=400, detail=f"{name} must be a date (YYYY-MM-DD)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


@cache
def create_app() -> FastAPI:
    """The app (one per process: the plugin manager may ask for it more than once)."""
    user_dep = Depends(get_user)
    # No /docs or /openapi.json: they would be the only routes without a user.
    app = FastAPI(
        title="Stable Audio clips",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[user_dep],
    )

    @app.get("/ui", response_class=HTMLResponse)
    def page(user: GetUserDep) -> HTMLResponse:
        return _page("./")

    @app.get("/ui/", response_class=HTMLResponse)
    def page_slash(user: GetUserDep) -> HTMLResponse:
        return _page("../")

    # The task instance tab: the ids are in the path (3.1 substitutes them unencoded, and a run id's
    # "+" would turn into a space in a query string); the page reads them from its own URL.
    @app.get("/ui/ti/{dag_id}/{run_id}/{task_id}/{map_index}", response_class=HTMLResponse)
    def task_page(user: GetUserDep, dag_id: str, run_id: str, task_id: str, map_index: str) -> HTMLResponse:
        return _page("../../../../../")

    @app.get("/static/{name}")
    def static(user: GetUserDep, name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(status_code=404, detail="Not found")
        body = files(__package__).joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC_FILES[name], headers=_NO_STORE)

    @app.get("/api/clips")
    def list_clips(
        user: GetUserDep,
        dag_id: Annotated[str | None, Query()] = None,
        model: Annotated[str | None, Query()] = None,
        since: Annotated[str | None, Query(description="YYYY-MM-DD (UTC), inclusive")] = None,
        until: Annotated[str | None, Query(description="YYYY-MM-DD (UTC), inclusive")] = None,
    ) -> JSONResponse:
        start, end = _date(since, "since"), _date(until, "until")
        if end is not None and until and len(until) == 10:
            end += timedelta(days=1)  # a day given as "until" includes that day
        dag_ids = readable_dag_ids(user, only=dag_id or None)
        with _session() as session:
            clips = records.list_clips(
                session, dag_ids=dag_ids, dag_id=dag_id or None, model=model or None, since=start, until=end
            )
            body = _listing(clips, user)
            # The filters' choices, over everything the user may see (not just what is shown).
            everything = records.list_clips(session, dag_ids=readable_dag_ids(user))
        choices = [c for c in everything if may_read_clips(user, c.dag_id)]
        body["dags"] = sorted({c.dag_id for c in choices})
        body["models"] = sorted({c.model for c in choices if c.model})
        return JSONResponse(body, headers=_NO_STORE)

    @app.get("/api/task-instance")
    def task_clips(
        user: GetUserDep,
        dag_id: Annotated[str, Query()],
        run_id: Annotated[str, Query()],
        task_id: Annotated[str, Query()],
        map_index: Annotated[int, Query()] = -1,
    ) -> JSONResponse:
        with _session() as session:
            clips = records.list_clips(
                session,
                dag_ids=readable_dag_ids(user, only=dag_id),
                dag_id=dag_id,
                task=(run_id, task_id, map_index),
            )
            body = _listing(clips, user)
        return JSONResponse(body, headers=_NO_STORE)

    @app.get("/api/clips/{clip_id}/audio")
    def clip_audio(user: GetUserDep, clip_id: str, request: Request) -> Response:
        # 404 alike for an id that names nothing and a clip of a DAG the user may not read: the
        # answer does not tell which clips exist.
        key = records.ClipKey.parse(clip_id)
        with _session() as session:
            clip = records.find_clip(session, key) if key is not None else None
        if clip is None or not may_read_clips(user, clip.dag_id):
            raise HTTPException(status_code=404, detail="No such clip")
        if clip.location is None:
            raise HTTPException(
                status_code=404, detail="The clip was not stored: the page plays it from its own URL"
            )
        try:
            source = audio.open_recorded(clip.location, recorded_size=clip.audio_file.get("file_size"))
            wanted = audio.byte_range(request.headers.get("range"), source.size)
        except audio.ClipUnavailable as error:
            raise HTTPException(status_code=error.status, detail=str(error)) from None
        headers = {
            **_NO_STORE,
            "Accept-Ranges": "bytes",
            "Content-Disposition": "inline",
        }
        if wanted is None:
            start, end, status = 0, source.size - 1, 200
        else:
            (start, end), status = wanted, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{source.size}"
        headers["Content-Length"] = str(max(0, end - start + 1))
        return StreamingResponse(
            source.stream(start, end), status_code=status, media_type=source.content_type, headers=headers
        )

    return app
