"""The Clips page's app (the ``stableaudio_clips`` plugin): what each user gets from each route.

Records come from real runs (``dag.test()`` of tests/dags/clips.py: a clip generated against the
emulator, and records forged by a task, as any task may write them); users are JWTs of an auth
manager that hides ``clips_secret`` from ``outsider``; requests go through FastAPI's test client to
the app as the API server mounts it. Nothing here leaves loopback.
"""

from __future__ import annotations

import http.server
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY
from tests.dags import load_dag
from tests.dags.clips import write_wav

AUTH_MANAGER = "tests.plugins.per_dag_auth.PerDagAuthManager"
JWT_SECRET = "clips-tests-" + "0123456789abcdef" * 4


class CountingServer(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that counts requests: the page's server must never send it one."""

    hits = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        type(self.server).hits += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"RIFF\x00\x00\x00\x00WAVE")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def ssrf_target() -> Iterator[str]:
    server = CountingServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def forged_locations(out: Path, target: str) -> dict[str, str]:
    """What a forged ``local_path`` (or, as ``url:...``, an ``audio_file`` URL) may name: name -> value."""
    expired = int(time.time()) - 3600
    return {
        "relative_traversal": "../../../../etc/passwd",
        "absolute_traversal_to_another_dag": f"{out}/public/../secret/clip.wav",
        "absolute_not_audio": "/etc/passwd",
        "file_uri_not_audio": "file:///etc/passwd",
        "missing_file": f"{out}/gone/clip.wav",
        "ssrf_http": f"{target}/latest/meta-data",
        "ssrf_unknown_scheme": "ftp://127.0.0.1/clip.wav",
        "remote_memory": "memory://clips-tests/remote.wav",
        # The same clip through a connection named in the URI: it would read with any connection.
        "remote_naming_a_connection": "memory://stableaudio_default@clips-tests/remote.wav",
        "url_only": f"url:{target}/cdn/clip.wav",
        "url_expired": f"url:{target}/cdn/old.wav?Expires={expired}&Signature=abc",
    }


def forge(run: Any, map_index: int, location: str) -> None:
    """Record a clip in ``run`` as task ``forged``: what any task of the DAG, or anyone who may write
    its XComs through the REST API, can write. ``url:<URL>``: a clip known by its URL only.

    The task instance is a copy of ``generate``'s row (one ``dag.test()`` task per case would cost
    seconds each); the XComs are rows like those the provider's tasks write.
    """
    import uuid

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    from tests.dags.clips import RECORD

    table = TaskInstance.__table__
    with create_session() as session:
        row = dict(
            session.execute(
                select(table).where(
                    table.c.dag_id == run.dag_id, table.c.run_id == run.run_id, table.c.task_id == "generate"
                )
            )
            .mappings()
            .one()
        )
        row.update(task_id="forged", map_index=map_index)
        if "id" in row:
            new = uuid.uuid4()  # as the version at hand types it (a UUID, or its text)
            row["id"] = (
                new if isinstance(row["id"], uuid.UUID) else (new.hex if len(row["id"]) == 32 else str(new))
            )
        session.execute(insert(table).values(**row))
        record = {**RECORD, "url": location.removeprefix("url:")} if location.startswith("url:") else RECORD
        values = (
            {"audio_file": record}
            if location.startswith("url:")
            else {"audio_file": record, "local_path": location}
        )
        dag_run_id = session.scalar(
            select(XComModel.dag_run_id).where(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
        )
        for key, value in values.items():
            session.execute(
                insert(XComModel.__table__).values(
                    dag_run_id=dag_run_id,
                    task_id="forged",
                    map_index=map_index,
                    key=key,
                    dag_id=run.dag_id,
                    run_id=run.run_id,
                    value=value,
                    timestamp=run.end_date,
                )
            )


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, airflow_db: None, emulator_server: Any, ssrf_target: str
) -> dict[str, Any]:
    """Runs of both DAGs, and clips forged in ``clips_public`` (map index: position in ``names``)."""
    import fsspec

    out = tmp_path_factory.mktemp("clips")
    write_wav(out / "remote.wav", 1.0)
    fsspec.filesystem("memory").pipe("/clips-tests/remote.wav", (out / "remote.wav").read_bytes())
    forged = forged_locations(out, ssrf_target)
    emulator_server.reset()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_STABLEAUDIO_DEFAULT",
            f'{{"conn_type": "stableaudio", "host": "{emulator_server.base_url}", "password": "{API_KEY}"}}',
        )
        secret = load_dag("clips.py", "clips_secret").test(run_conf={"output_dir": str(out)})
        public = load_dag("clips.py", "clips_public").test(run_conf={"output_dir": str(out)})
    for run in (secret, public):
        assert {ti.state for ti in run.get_task_instances()} == {"success"}
    for map_index, location in enumerate(forged.values()):
        forge(public, map_index, location)
    return {"out": out, "forged": forged, "names": list(forged), "public": public, "secret": secret}


@pytest.fixture(scope="module")
def app(recorded: dict[str, Any]) -> Iterator[Any]:
    from airflow.api_fastapi import app as airflow_app

    from airflow_provider_stableaudio.plugins.clips.app import create_app

    def swap(auth_manager: Any) -> Any:
        """Put ``auth_manager`` where ``get_auth_manager()`` finds it; the one that was there."""
        if hasattr(airflow_app, "_AuthManagerState"):  # Airflow >= 3.2
            kept, airflow_app._AuthManagerState.instance = (
                airflow_app._AuthManagerState.instance,
                auth_manager,
            )
        else:
            kept, airflow_app.auth_manager = airflow_app.auth_manager, auth_manager
        return kept

    kept = swap(None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", AUTH_MANAGER)
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
        airflow_app.create_auth_manager()
        yield create_app()
    swap(kept)


def token(name: str, role: str = "viewer") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role=role))


@pytest.fixture(scope="module")
def anonymous(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app)


@pytest.fixture(scope="module")
def admin(app: Any) -> Any:
    """The UI's way: the ``_token`` cookie, sent by the same-origin iframe."""
    from fastapi.testclient import TestClient

    client = TestClient(app)
    client.cookies.set("_token", token("admin", "admin"))
    return client


@pytest.fixture(scope="module")
def outsider(app: Any) -> Any:
    """A viewer who may not read ``clips_secret``; a Bearer token, as API clients send it."""
    from fastapi.testclient import TestClient

    return TestClient(app, headers={"Authorization": f"Bearer {token('outsider')}"})


def xcom(run: Any, task_id: str, key: str) -> Any:
    """What the task recorded, read from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        )


def clips(client: Any, **query: str) -> dict[str, Any]:
    response = client.get("/api/clips", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def clip_of(body: dict[str, Any], dag_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
    found = [
        c
        for c in body["clips"]
        if (c["dag_id"], c["task_id"], c["map_index"]) == (dag_id, task_id, map_index)
    ]
    assert len(found) == 1, [(c["dag_id"], c["task_id"], c["map_index"]) for c in body["clips"]]
    return found[0]


def forged_clip(body: dict[str, Any], recorded: dict[str, Any], name: str) -> dict[str, Any]:
    return clip_of(body, "clips_public", "forged", recorded["names"].index(name))


# -- authentication ------------------------------------------------------------------------------

ROUTES = [
    "/ui",
    "/ui/",
    "/ui/ti/clips_public/run/generate/-1",
    "/static/clips.js",
    "/api/clips",
    "/api/task-instance?dag_id=clips_public&run_id=r&task_id=generate",
    "/api/clips/1:-1:generate/audio",
]


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_refuses_a_request_without_a_user(anonymous: Any, route: str) -> None:
    response = anonymous.get(route)
    assert response.status_code == 401
    assert "clip" not in response.text.lower()


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_refuses_a_forged_token(app: Any, route: str) -> None:
    from fastapi.testclient import TestClient

    forged = TestClient(app, cookies={"_token": "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.bad"})
    assert forged.get(route).status_code in (401, 403)


@pytest.mark.parametrize("route", ["/docs", "/redoc", "/openapi.json"])
def test_the_app_publishes_no_unauthenticated_schema_or_docs(anonymous: Any, route: str) -> None:
    assert anonymous.get(route).status_code in (401, 404)


def test_the_page_is_static_html_with_its_script_relative_to_the_apps_root(admin: Any) -> None:
    for route, base in [("/ui", "./"), ("/ui/", "../"), ("/ui/ti/d/r/t/-1", "../../../../../")]:
        page = admin.get(route)
        assert page.status_code == 200
        assert f'<base href="{base}">' in page.text
        assert '<script src="static/clips.js">' in page.text
    assert admin.get("/static/clips.js").headers["content-type"].startswith("text/javascript")


def test_under_a_base_url_sub_path_every_url_the_page_uses_resolves_into_the_app(admin: Any) -> None:
    """The API server mounts the app below its base_url; the page's URLs are relative to <base href>."""
    from urllib.parse import urljoin

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_provider_stableaudio.plugins.clips.app import create_app

    server = FastAPI()
    server.mount("/team-a/airflow/stableaudio-clips", create_app())
    client = TestClient(server, cookies=dict(admin.cookies))
    for page in ("/team-a/airflow/stableaudio-clips/ui/", "/team-a/airflow/stableaudio-clips/ui/ti/d/r/t/-1"):
        html = client.get(page).text
        base = urljoin(page, html.split('<base href="')[1].split('"')[0])
        assert base == "/team-a/airflow/stableaudio-clips/"
        assert client.get(urljoin(base, "static/clips.js")).status_code == 200
        assert client.get(urljoin(base, "api/clips")).json()["total_clips"] > 0


# -- what the page lists ---------------------------------------------------------------------------


def test_the_generated_clip_is_listed_with_what_the_provider_recorded(
    admin: Any, recorded: dict[str, Any]
) -> None:
    clip = clip_of(clips(admin), "clips_public", "generate")
    audio_file = xcom(recorded["public"], "generate", "audio_file")
    assert clip["prompt"] == "a calm piano loop for the clips page"
    assert clip["model"] == audio_file["model"]
    assert clip["credits"] == audio_file["credits_used"]
    assert clip["service"] == "AI/ML API"
    assert clip["seconds"] == pytest.approx(3, abs=0.05)  # measured from the stored WAV
    assert clip["stored"] is True
    assert clip["run_id"] == recorded["public"].run_id
    assert clip["src"] == f"api/clips/{clip['id']}/audio"
    assert clip["problem"] is None


def test_clips_are_listed_newest_first_with_totals_of_what_is_shown(admin: Any) -> None:
    body = clips(admin)
    created = [c["created"] for c in body["clips"]]
    assert created == sorted(created, reverse=True)
    ids = [c["id"] for c in body["clips"]]  # other tests' clips may be listed too
    assert ids.index(clip_of(body, "clips_public", "generate")["id"]) < ids.index(
        clip_of(body, "clips_secret", "secret_clip")["id"]
    )  # clips_secret ran first
    assert body["total_clips"] == len(body["clips"])
    assert body["total_credits"] == sum(c["credits"] or 0 for c in body["clips"])


def test_filters_narrow_the_list_and_its_totals(admin: Any, recorded: dict[str, Any]) -> None:
    by_dag = clips(admin, dag_id="clips_secret")
    assert [c["dag_id"] for c in by_dag["clips"]] == ["clips_secret"]
    assert (by_dag["total_clips"], by_dag["total_credits"]) == (1, 7)
    by_model = clips(admin, model="forged-model")
    assert {c["task_id"] for c in by_model["clips"]} == {"forged"}
    assert by_model["total_clips"] == len(recorded["forged"])
    today = clips(admin)["clips"][0]["created"][:10]
    assert clips(admin, since=today, until=today)["total_clips"] == len(clips(admin)["clips"])
    assert clips(admin, since="2999-01-01")["clips"] == []
    assert clips(admin, until="2000-01-01")["clips"] == []
    assert admin.get("/api/clips", params={"since": "last tuesday"}).status_code == 400
    # The filters offer every DAG and model the user may see, whatever is selected.
    assert {"clips_public", "clips_secret"} <= set(by_dag["dags"])
    assert "secret-model" in by_dag["models"]


def test_the_task_instance_tab_gets_that_task_instances_clip_only(
    admin: Any, recorded: dict[str, Any]
) -> None:
    run_id = recorded["public"].run_id
    body = admin.get(
        "/api/task-instance", params={"dag_id": "clips_public", "run_id": run_id, "task_id": "generate"}
    ).json()
    assert [(c["task_id"], c["map_index"]) for c in body["clips"]] == [("generate", -1)]
    mapped = admin.get(
        "/api/task-instance",
        params={"dag_id": "clips_public", "run_id": run_id, "task_id": "forged", "map_index": 2},
    ).json()
    assert [(c["task_id"], c["map_index"]) for c in mapped["clips"]] == [("forged", 2)]


# -- who sees what ---------------------------------------------------------------------------------


def test_a_user_without_access_to_a_dag_sees_none_of_its_clips(
    outsider: Any, admin: Any, recorded: dict[str, Any]
) -> None:
    body = clips(outsider)
    shown = {c["dag_id"] for c in body["clips"]}
    assert "clips_public" in shown
    assert "clips_secret" not in shown
    assert "clips_secret" not in body["dags"]
    assert "secret-model" not in body["models"]
    assert clips(outsider, dag_id="clips_secret")["clips"] == []
    ti = outsider.get(
        "/api/task-instance",
        params={"dag_id": "clips_secret", "run_id": recorded["secret"].run_id, "task_id": "secret_clip"},
    )
    assert ti.json()["clips"] == []


def test_a_user_without_access_to_a_dag_cannot_fetch_its_audio(outsider: Any, admin: Any) -> None:
    secret = clip_of(clips(admin), "clips_secret", "secret_clip")
    assert admin.get(secret["src"].replace("api/", "/api/", 1)).status_code == 200
    refused = outsider.get(f"/api/clips/{secret['id']}/audio")
    assert refused.status_code == 404
    assert refused.content[:4] != b"RIFF"


def test_a_user_with_no_role_gets_no_clips(app: Any) -> None:
    from fastapi.testclient import TestClient

    nobody = TestClient(app, cookies={"_token": token("nobody", role=None)})  # type: ignore[arg-type]
    assert clips(nobody)["clips"] == []


# -- serving audio ---------------------------------------------------------------------------------


def test_the_audio_is_the_stored_file_and_seeks_with_range_requests(
    admin: Any, recorded: dict[str, Any]
) -> None:
    clip = clip_of(clips(admin), "clips_public", "generate")
    stored = Path(xcom(recorded["public"], "generate", "local_path")).read_bytes()
    whole = admin.get(f"/api/clips/{clip['id']}/audio")
    assert whole.status_code == 200
    assert whole.content == stored
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "audio/wav"
    part = admin.get(f"/api/clips/{clip['id']}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(stored)}"
    assert part.content == stored[100:200]
    tail = admin.get(f"/api/clips/{clip['id']}/audio", headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, stored[-10:])
    open_ended = admin.get(f"/api/clips/{clip['id']}/audio", headers={"Range": f"bytes={len(stored) - 5}-"})
    assert open_ended.content == stored[-5:]
    beyond = admin.get(f"/api/clips/{clip['id']}/audio", headers={"Range": f"bytes={len(stored)}-"})
    assert beyond.status_code == 416


def test_a_clip_on_object_storage_streams_through_the_server(admin: Any, recorded: dict[str, Any]) -> None:
    clip = forged_clip(clips(admin), recorded, "remote_memory")
    assert clip["src"] == f"api/clips/{clip['id']}/audio"
    response = admin.get(clip["src"].replace("api/", "/api/", 1), headers={"Range": "bytes=0-11"})
    assert response.status_code == 206
    assert response.content == (recorded["out"] / "remote.wav").read_bytes()[:12]


def test_a_missing_file_is_reported_as_gone_in_the_list_and_by_the_audio_route(
    admin: Any, recorded: dict[str, Any]
) -> None:
    clip = forged_clip(clips(admin), recorded, "missing_file")
    assert clip["src"] is None
    assert clip["problem"] == "The clip's file is gone."
    response = admin.get(f"/api/clips/{clip['id']}/audio")
    assert response.status_code == 404
    assert response.json()["detail"] == "The clip's file is gone."


def test_a_clip_known_by_url_only_plays_from_its_url_and_the_server_never_fetches_it(
    admin: Any, recorded: dict[str, Any], ssrf_target: str
) -> None:
    from tests.plugins.test_clips_app import CountingServer

    body = clips(admin)
    clip = forged_clip(body, recorded, "url_only")
    assert clip["src"] == f"{ssrf_target}/cdn/clip.wav"  # the browser plays it
    assert admin.get(f"/api/clips/{clip['id']}/audio").status_code == 404
    expired = forged_clip(body, recorded, "url_expired")
    assert (expired["src"], expired["problem"]) == (None, "The clip's URL has expired and it was not stored.")
    assert CountingServer.hits == 0


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("relative_traversal", 403),
        ("absolute_traversal_to_another_dag", 403),
        ("absolute_not_audio", 403),
        ("file_uri_not_audio", 403),
        ("ssrf_http", 403),
        ("ssrf_unknown_scheme", 403),
        ("remote_naming_a_connection", 403),
    ],
)
def test_a_forged_location_is_never_served(
    admin: Any, recorded: dict[str, Any], name: str, status: int
) -> None:
    from tests.plugins.test_clips_app import CountingServer

    clip = forged_clip(clips(admin), recorded, name)
    response = admin.get(f"/api/clips/{clip['id']}/audio")
    assert response.status_code == status
    assert "root:" not in response.text
    assert recorded["forged"][name] not in response.text  # the page does not map the file system
    assert clip["src"] is None or clip["src"].startswith("api/")
    assert CountingServer.hits == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/clips/..%2F..%2F..%2Fetc%2Fpasswd/audio",
        "/api/clips/%2e%2e%2f%2e%2e%2fetc%2fpasswd/audio",
        "/api/clips/%252e%252e%252fetc%252fpasswd/audio",
        "/api/clips/%2Fetc%2Fpasswd/audio",
        "/api/clips/1:-1:..%2F..%2Fetc%2Fpasswd/audio",
        "/api/clips/1:-1:generate/../../../etc/passwd",
        "/static/..%2Fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fdelivery.py",
        "/static/index.html/../../app.py",
        "/static/%2Fetc%2Fpasswd",
    ],
)
def test_a_path_in_the_request_names_no_file(admin: Any, path: str) -> None:
    response = admin.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text
    assert "import" not in response.text


def test_the_request_cannot_choose_where_the_audio_comes_from(admin: Any, ssrf_target: str) -> None:
    from tests.plugins.test_clips_app import CountingServer

    clip = clip_of(clips(admin), "clips_public", "generate")
    plain = admin.get(f"/api/clips/{clip['id']}/audio")
    steered = admin.get(
        f"/api/clips/{clip['id']}/audio",
        params={"path": "/etc/passwd", "local_path": "/etc/passwd", "url": f"{ssrf_target}/x"},
    )
    assert steered.content == plain.content
    assert CountingServer.hits == 0


def test_another_dags_clip_id_is_that_clips_own_dag_checked(outsider: Any, admin: Any) -> None:
    public, secret = (
        clip_of(clips(admin), d, t)
        for d, t in [("clips_public", "generate"), ("clips_secret", "secret_clip")]
    )
    # The DAG comes from the record the id names, not from anything the request says.
    mixed = outsider.get(f"/api/clips/{secret['id']}/audio", params={"dag_id": "clips_public"})
    assert mixed.status_code == 404
    run_row = public["id"].split(":")[0]
    assert outsider.get(f"/api/clips/{run_row}:-1:secret_clip/audio").status_code == 404
    assert outsider.get(f"/api/clips/{public['id']}/audio").status_code == 200


def test_nothing_served_holds_the_api_key(admin: Any, recorded: dict[str, Any]) -> None:
    body = clips(admin)
    served = [admin.get("/api/clips").text, admin.get("/ui/").text, admin.get("/static/clips.js").text]
    served += [
        admin.get(c["src"].replace("api/", "/api/", 1)).text
        for c in body["clips"]
        if c["src"] and c["src"].startswith("api/")
    ]
    assert all(API_KEY not in text for text in served)


# -- the plugin ------------------------------------------------------------------------------------


def test_the_plugin_mounts_the_app_and_adds_the_menu_entry_and_the_task_instance_tab() -> None:
    from airflow_provider_stableaudio.plugins.clips import StableAudioClipsPlugin

    plugin = StableAudioClipsPlugin()
    [mounted] = plugin.fastapi_apps
    assert mounted["url_prefix"] == "/stableaudio-clips"
    views = {view["destination"]: view for view in plugin.external_views}
    assert (views["nav"]["category"], views["nav"]["name"]) == ("Browse", "Clips")
    assert not views["nav"]["href"].startswith("/")  # relative: works under a base_url sub-path
    assert views["task_instance"]["href"].endswith("/ui/ti/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}")


def test_the_page_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_stableaudio.plugins.clips import StableAudioClipsPlugin

    monkeypatch.setenv("AIRFLOW__STABLEAUDIO__CLIPS_PAGE", "False")
    plugin = StableAudioClipsPlugin()
    assert (plugin.fastapi_apps, plugin.external_views) == ([], [])


def test_the_wheel_registers_the_plugin_entry_point() -> None:
    import tomllib

    from tests.conftest import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["airflow.plugins"] == {
        "stableaudio_clips": "airflow_provider_stableaudio.plugins.clips:StableAudioClipsPlugin"
    }


def test_a_stored_wav_is_measured_from_its_header(tmp_path: Path) -> None:
    from airflow_provider_stableaudio.plugins.clips.audio import measured_seconds

    write_wav(tmp_path / "c.wav", 2.5)
    with wave.open(str(tmp_path / "c.wav")) as check:
        assert check.getnframes() == 20000
    assert measured_seconds(str(tmp_path / "c.wav")) == pytest.approx(2.5)
    assert measured_seconds("s3://bucket/c.wav") is None
