"""Nothing a trigger does may block the triggerer's event loop: no import, no synchronous supervisor call.

The triggerer imports the trigger class and runs ``run()`` on its one event loop. This checks, in a
fresh interpreter that has loaded what a triggerer has loaded (and not aiohttp), which modules get
imported on the loop's thread and whether the connection's extra is read synchronously there. It
counts, it never times: a second of import on a loaded machine and 50 ms on an idle one are the
same defect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import API_KEY, ROOT

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time

    import importlib

    import airflow.jobs.triggerer_job_runner  # what the triggerer process has loaded
    from airflow.sdk.definitions.connection import Connection

    assert "aiohttp" not in sys.modules, "the triggerer itself loaded aiohttp: nothing to check"
    on_loop = {"imports": [], "sync_extra_reads": 0}
    loop_thread = None

    def audit(event, args):
        if event == "import" and threading.get_ident() == loop_thread:
            on_loop["imports"].append(args[0])

    sys.addaudithook(audit)
    extra_dejson = Connection.extra_dejson

    def counting_extra(self):
        if threading.get_ident() == loop_thread:
            on_loop["sync_extra_reads"] += 1
        return extra_dejson.fget(self)

    Connection.extra_dejson = property(counting_extra)

    async def main():
        global loop_thread
        loop_thread = threading.get_ident()
        # As the triggerer does: import the class by its path on the loop, then run it.
        module = importlib.import_module("airflow_provider_stableaudio.triggers.stable_audio")
        trigger_class = module.StableAudioGenerationTrigger
        trigger = trigger_class(
            conn_id="stableaudio_default",
            generation_id=sys.argv[1],
            poll_interval=0.2,
            end_time=time.time() + 30,
        )
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(main())
    print(json.dumps({"events": events, **on_loop}))
    """
)


def test_trigger_imports_nothing_heavy_and_reads_no_connection_synchronously_on_the_loop(connection) -> None:
    from tests.triggers.test_stable_audio_trigger import submit

    generation_id = submit(seconds_total=1)
    env = {
        **os.environ,
        "AIRFLOW_CONN_STABLEAUDIO_DEFAULT": json.dumps(
            {
                "conn_type": "stableaudio",
                "host": connection.base_url,
                "password": API_KEY,
                "extra": {"timeout": 20},
            }
        ),
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, generation_id],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    (event,) = report["events"]
    assert event["status"] == "success"
    heavy = {"aiohttp", "yarl", "multidict", "requests", "urllib3"}
    assert not heavy & {name.split(".")[0] for name in report["imports"]}, report["imports"]
    assert report["sync_extra_reads"] == 0
