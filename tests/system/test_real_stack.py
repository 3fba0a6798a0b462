"""What users rely on, proven on a real deployment: the deferred path through real triggerers.

One stack serves the session (``conftest.py``); the scenarios run in file order and each resets the
emulator's ledger first. Runs are triggered and read back through the REST API; the trigger table and
the task reschedules are read from Postgres. The last two scenarios read what all the others left:
the canary key and the component logs.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
import urllib.error
import urllib.request
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.system.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


def posts(stack: Stack) -> list[dict[str, Any]]:
    return [r for r in stack.emulator("GET", "ledger")["requests"] if r["method"] == "POST"]


# Every generation takes at least 10 s: Airflow's scheduler can handle the worker's "deferred" exit
# seconds after the fact, and a trigger that fires before that meets upstream race #71580 (the try
# is failed with "finished with state success, but the task instance's state attribute is queued";
# docs/deployment.md). Real generations take 30-60 s.
def fresh_emulator(stack: Stack, generation_seconds: float) -> None:
    assert generation_seconds >= 10
    stack.emulator("POST", "reset")
    stack.emulator("POST", "config", {"clear_faults": True, "generation_seconds": generation_seconds})


def durable_task_state(stack: Stack) -> bool:
    """Whether this Airflow keeps a task's state across its tries (3.3 and newer)."""
    major, minor = (int(part) for part in stack.airflow_version.split(".")[:2])
    return (major, minor) >= (3, 3)


# The triggerers' loop diagnostics (triggerer_site/sitecustomize.py): every callback that held a
# triggerer's event loop for over 50 ms, with what the loop thread did meanwhile, and every synchronous
# supervisor call made on a loop's thread.
PACKAGE_FRAME = "/airflow_provider_stableaudio/"
STALL = 0.05


def loop_diagnostics(stack: Stack, kind: str) -> list[dict[str, Any]]:
    return [
        record
        for path in sorted((stack.logs / "loop-stalls").glob("stalls-*.jsonl"))
        for line in path.read_text(errors="replace").splitlines()
        if line.strip() and (record := json.loads(line))["kind"] == kind
    ]


def in_package(frames: list[str]) -> bool:
    return any(PACKAGE_FRAME in frame for frame in frames)


def sync_sends_from_the_provider(stack: Stack) -> list[str]:
    """Synchronous supervisor calls that this provider's code made on a triggerer's event loop."""
    return [
        f"{record['message']} from {' <- '.join(reversed([f for f in record['frames'] if PACKAGE_FRAME in f]))}"
        for record in loop_diagnostics(stack, "sync_send")
        if in_package(record["frames"])
    ]


def seconds_of(path: str | Path) -> float:
    with wave.open(str(path)) as clip:
        return clip.getnframes() / clip.getframerate()


def watch(stack: Stack, dag_id: str, run_id: str, *, timeout: float = 600) -> dict[str, Any]:
    """Follow a run to its end; what was seen on the way: task states and the triggerers of its triggers."""
    seen: dict[str, Any] = {"states": {}, "triggerers": set(), "max_deferred": 0}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tis = stack.task_instances(dag_id, run_id)
        for ti in tis:
            seen["states"].setdefault(ti["task_id"], set()).add(ti["state"])
        seen["max_deferred"] = max(seen["max_deferred"], sum(ti["state"] == "deferred" for ti in tis))
        rows = stack.psql("select triggerer_id from trigger where triggerer_id is not null")
        seen["triggerers"].update(int(r) for r in rows.split())
        state = stack.run_state(dag_id, run_id)
        if state in ("success", "failed"):
            seen["state"] = state
            # Read again: the run may have ended after the read above (a task then still running).
            seen["task_instances"] = stack.task_instances(dag_id, run_id)
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{dag_id} run {run_id} did not finish in {timeout}s; logs in {stack.logs}")


def test_example_dag_defers_to_a_triggerer_and_delivers_the_clip(stack: Stack, figures) -> None:
    fresh_emulator(stack, generation_seconds=10)
    started = time.monotonic()
    run_id = stack.trigger("example_stable_audio", {"seconds": 3})
    seen = watch(stack, "example_stable_audio", run_id)
    figures["run_seconds"] = round(time.monotonic() - started, 1)

    assert seen["state"] == "success"
    assert "deferred" in seen["states"]["generate_clip"]
    assert seen["triggerers"]
    assert seen["triggerers"] <= set(stack.state["triggerer_jobs"].values())
    audio_file = stack.xcom("example_stable_audio", run_id, "generate_clip", "audio_file")
    assert stack.xcom("example_stable_audio", run_id, "generate_clip", "return_value") == audio_file["url"]
    local_path = stack.xcom("example_stable_audio", run_id, "generate_clip", "local_path")
    assert Path(local_path).is_relative_to(stack.output)
    assert seconds_of(local_path) == 3
    assert Path(local_path).stat().st_size == audio_file["file_size"]
    assert stack.xcom("example_stable_audio", run_id, "describe_clip", "return_value") == 3.0
    assert stack.links("example_stable_audio", run_id, "generate_clip") == {
        "Stable Audio clip": audio_file["url"]
    }
    assert len(posts(stack)) == 1


def test_decorated_task_defers_and_resumes_with_the_request_its_function_returned(stack: Stack) -> None:
    # A real triggerer hands the deferral's kwargs back on resume (dag.test() drops them), so this is
    # where the function's request reaches execute_complete without the function running again.
    fresh_emulator(stack, generation_seconds=10)
    run_id = stack.trigger("example_stable_audio_decorator")
    seen = watch(stack, "example_stable_audio_decorator", run_id)

    assert seen["state"] == "success"
    assert "deferred" in seen["states"]["ambience"]
    generations = stack.emulator("GET", "ledger")["generations"]
    assert len(posts(stack)) == len(generations) == 2  # one per topic: no function ran twice
    assert {g["steps"] for g in generations} == {50}
    for map_index in (0, 1):
        audio_file = stack.xcom("example_stable_audio_decorator", run_id, "ambience", "audio_file", map_index)
        local_path = stack.xcom("example_stable_audio_decorator", run_id, "ambience", "local_path", map_index)
        assert seconds_of(local_path) == 4
        assert Path(local_path).stat().st_size == audio_file["file_size"]


def test_mapped_fan_out_is_carried_by_both_triggerers_with_one_post_per_prompt(stack: Stack, figures) -> None:
    count = 40
    fresh_emulator(stack, generation_seconds=20)
    started = time.monotonic()
    run_id = stack.trigger("stack_fanout", {"count": count})
    seen = watch(stack, "stack_fanout", run_id, timeout=900)
    figures.update(
        run_seconds=round(time.monotonic() - started, 1),
        clips=count,
        most_deferred_at_once=seen["max_deferred"],
    )

    assert seen["state"] == "success"
    assert seen["triggerers"] == set(stack.state["triggerer_jobs"].values())  # both carried it
    generates = [ti for ti in seen["task_instances"] if ti["task_id"] == "generate"]
    assert len(generates) == count
    assert {ti["state"] for ti in generates} == {"success"}
    assert {ti["try_number"] for ti in generates} == {1}
    prompts = Counter(g["prompt"] for g in stack.emulator("GET", "ledger")["generations"])
    assert len(posts(stack)) == count
    assert sorted(prompts.values()) == [1] * count
    clips = sorted((stack.output / "stack_fanout").glob("*/clip_*.wav"))
    assert len(clips) == count
    assert {seconds_of(clip) for clip in clips} == {2}
    figures["posts"] = len(posts(stack))


def test_task_retry_reattaches_to_its_generation_after_a_failed_download(stack: Stack, figures) -> None:
    fresh_emulator(stack, generation_seconds=10)
    stack.emulator("POST", "config", {"rate_download_404": 1.0})
    run_id = stack.trigger("stack_retry")

    def download_refused() -> bool:
        requests = stack.emulator("GET", "ledger")["requests"]
        return any(r["fault"] == "download_404" for r in requests)

    stack.wait_for(download_refused, "the first try's download to be refused", 300)
    stack.emulator("POST", "config", {"clear_faults": True})
    seen = watch(stack, "stack_retry", run_id)

    assert seen["state"] == "success"
    (ti,) = seen["task_instances"]
    assert ti["try_number"] == 2
    if durable_task_state(stack):
        assert len(posts(stack)) == 1  # the retry waited for the generation it had paid for
    else:  # Airflow < 3.3 keeps no task state across tries: the retry pays again (docs/compatibility.md)
        assert len(posts(stack)) == 2
    (clip,) = (stack.output / "stack_retry").glob("*/clip.wav")
    assert seconds_of(clip) == 2
    figures.update(posts=len(posts(stack)), tries=ti["try_number"])


def test_sensor_waits_deferred(stack: Stack) -> None:
    fresh_emulator(stack, generation_seconds=10)
    run_id = stack.trigger("example_stable_audio_sensor")
    seen = watch(stack, "example_stable_audio_sensor", run_id)

    assert seen["state"] == "success"
    assert "deferred" in seen["states"]["wait_for_clip"]
    assert len(posts(stack)) == 1
    local_path = stack.xcom("example_stable_audio_sensor", run_id, "wait_for_clip", "local_path")
    assert seconds_of(local_path) == 6


def test_sensor_in_reschedule_mode_frees_its_slot_between_pokes(stack: Stack) -> None:
    fresh_emulator(stack, generation_seconds=15)
    run_id = stack.trigger("stack_sensor_reschedule")
    seen = watch(stack, "stack_sensor_reschedule", run_id)

    assert seen["state"] == "success"
    reschedules = int(
        stack.psql(
            "select count(*) from task_reschedule r join task_instance t on t.id = r.ti_id "
            f"where t.run_id = '{run_id}' and t.task_id = 'wait_for_clip'"
        )
    )
    assert reschedules >= 1
    assert len(posts(stack)) == 1
    (clip,) = (stack.output / "stack_sensor_reschedule").glob("*/clip.wav")
    assert seconds_of(clip) == 2


def test_fifty_triggers_start_at_once_on_a_connection_with_an_extra(stack: Stack, figures) -> None:
    """One triggerer creates 50 triggers in one go, each reading the connection and its extra.

    Before Airflow 3.3.2 ``Connection.extra_dejson`` and the synchronous secret mask make a
    synchronous supervisor call, which common-compat says can raise ``DeadlockImminentError``. On the
    triggerers of 3.1.2 and 3.2.2 it fails nothing visible (3.2 runs it on the loop through greenback,
    3.1's mask swallows asgiref's refusal; docs/compatibility.md), so the triggerers record every such
    call made on an event loop's thread, and none may come from this provider's code.
    """
    count = 50
    for name in stack.state["triggerer_jobs"]:
        stack.kill(name)
    fresh_emulator(stack, generation_seconds=30)
    run_id = stack.trigger("stack_fanout", {"count": count})

    def all_deferred() -> bool:
        tis = [t for t in stack.task_instances("stack_fanout", run_id) if t["task_id"] == "generate"]
        return len(tis) == count and all(t["state"] == "deferred" for t in tis)

    stack.wait_for(all_deferred, f"{count} tasks to defer with no triggerer running", 600)
    started = time.monotonic()
    stack.start_triggerer("triggerer-1", env={"AIRFLOW__TRIGGERER__CAPACITY": "1000"})
    seen = watch(stack, "stack_fanout", run_id)
    figures.update(
        run_seconds_after_the_triggerer_started=round(time.monotonic() - started, 1), triggers=count
    )
    stack.kill("triggerer-1")  # back to two triggerers with the tier's capacity
    for name in ("triggerer-1", "triggerer-2"):
        stack.start_triggerer(name)

    # The deadlock-prone path itself, whether or not this release raises on it: 3.1 fails the call
    # (asgiref: no AsyncToSync on the loop's thread), 3.2 teleports it back into the loop (greenback),
    # 3.3's task SDK raises DeadlockImminentError only when another call is in flight at that moment.
    assert sync_sends_from_the_provider(stack) == []
    assert seen["state"] == "success"
    generates = [ti for ti in seen["task_instances"] if ti["task_id"] == "generate"]
    assert {(ti["state"], ti["try_number"]) for ti in generates} == {("success", 1)}
    assert len(posts(stack)) == count
    trigger_logs = [p for p in (stack.airflow_home / "logs" / "dag_id=stack_fanout").rglob("*.trigger.*")]
    failures = [
        line
        for path in [*trigger_logs, stack.logs / "triggerer-1.log"]
        for line in path.read_text(errors="replace").splitlines()
        if "DeadlockImminent" in line or "Trigger failure" in line or "Trigger failed" in line
    ]
    assert failures == []


# The rate-limit scenario (issue 18): the emulator holds each key to 6 requests in any 5 s (1.2 a
# second), then locks it out for 10 s and says how long (Retry-After; with none the provider would wait
# out Stability's 60 s, too long for the tier). Two fan-outs of 12 clips run at once, each on a key of
# its own shared by both triggerers and every task process. The limit binds: the workers' submits alone
# come at about a second apart, and polling each clip every 2 s would want 6 requests a second; a
# trigger that sleeps out the Retry-After wakes with every other at the lockout's end, and a submit
# that meets a lockout must wait it out. One connection sets the request budget
# (`max_requests_per_second` 0.9: the machine's processes together, sharing the key's schedule), the
# other leaves the provider to find the limit from the 429s.
RATE_LIMIT = {
    "limit_requests": 6,
    "limit_window_seconds": 5,
    "limit_lockout_seconds": 10,
    "limit_retry_after": True,
}
RATE_LIMIT_CLIPS = 12
RATE_LIMIT_CASES = {  # DAG id: (connection id, its extra)
    "stack_rate_limit_budgeted": (
        "stableaudio_rate_limit_budgeted",
        {"timeout": 30, "max_requests_per_second": 0.9},
    ),
    "stack_rate_limit_unbudgeted": ("stableaudio_rate_limit_unbudgeted", {"timeout": 30}),
}


def rate_limit_connections(stack: Stack) -> dict[str, str]:
    """The scenario's connections (one API key each, all canaries), added once; DAG id: key."""
    keys = stack.state.setdefault("rate_limit_keys", {})
    for dag_id, (conn_id, extra) in RATE_LIMIT_CASES.items():
        if dag_id in keys:
            continue
        keys[dag_id] = f"canary-{secrets.token_hex(16)}"
        stack.api(
            "POST",
            "/connections",
            {
                "connection_id": conn_id,
                "conn_type": "stableaudio",
                "host": stack.state["emulator_url"],
                "password": keys[dag_id],
                "extra": json.dumps(extra),
            },
        )
    stack._save()
    stack.emulator("POST", "config", {"api_keys": [stack.state["api_key"], *keys.values()]})
    return dict(keys)


def first_request_with(stack: Stack, key: str) -> None:
    """One request with ``key`` (a 400: no generation id), so the ledger lists the keys in this order."""
    request = urllib.request.Request(
        stack.state["emulator_url"] + "/v2/generate/audio", headers={"Authorization": f"Bearer {key}"}
    )
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=10).close()


def test_fan_outs_sharing_a_key_across_processes_stay_inside_its_rate_limit(stack: Stack, figures) -> None:
    for name in ("triggerer-1", "triggerer-2"):
        if not stack.alive(name):
            stack.start_triggerer(name)
    keys = rate_limit_connections(stack)
    fresh_emulator(stack, generation_seconds=30)
    stack.emulator("POST", "config", RATE_LIMIT)  # after fresh_emulator: clearing the faults lifts it
    try:
        for key in keys.values():  # ledger()["rate_limit"]["keys"][i] is the i-th DAG's key
            first_request_with(stack, key)
        started = time.monotonic()
        runs = {dag_id: stack.trigger(dag_id, {"count": RATE_LIMIT_CLIPS}) for dag_id in RATE_LIMIT_CASES}
        seen = {dag_id: watch(stack, dag_id, run_id, timeout=900) for dag_id, run_id in runs.items()}
        run_seconds = round(time.monotonic() - started, 1)
        ledger = stack.emulator("GET", "ledger")
    finally:
        stack.emulator("POST", "config", {"clear_rate_limit": True})

    per_key = dict(zip(RATE_LIMIT_CASES, ledger["rate_limit"]["keys"], strict=True))
    api_requests = [r for r in ledger["requests"] if r["path"] == "/v2/generate/audio"]
    accepted_posts = [r for r in api_requests if r["method"] == "POST" and r["status"] in (200, 201)]
    figures.update(
        run_seconds=run_seconds,
        clips=len(RATE_LIMIT_CASES) * RATE_LIMIT_CLIPS,
        emulator_limit=RATE_LIMIT,
        budget=RATE_LIMIT_CASES["stack_rate_limit_budgeted"][1]["max_requests_per_second"],
        keys={
            dag_id.removeprefix("stack_rate_limit_"): {
                "requests": entry["requests"] - 1,  # less the one that put the keys in order
                "requests_limited": entry["requests_limited"],
                "lockouts": entry["lockouts"],
            }
            for dag_id, entry in per_key.items()
        },
        posts_accepted=len(accepted_posts),
        posts_refused=sum(r["method"] == "POST" and r["status"] == 429 for r in api_requests),
        polls_per_clip=round(
            sum(r["method"] == "GET" and r["status"] == 200 for r in api_requests) / len(accepted_posts), 2
        )
        if accepted_posts
        else None,
    )

    carried_by = set().union(*(run["triggerers"] for run in seen.values()))
    assert carried_by == set(stack.state["triggerer_jobs"].values())  # both triggerers, every process
    for dag_id, run in seen.items():
        generates = [ti for ti in run["task_instances"] if ti["task_id"] == "generate"]
        outcomes = Counter((ti["state"], ti["try_number"]) for ti in generates)
        assert (run["state"], outcomes) == ("success", {("success", 1): RATE_LIMIT_CLIPS}), dag_id
        clips = sorted((stack.output / dag_id).glob("*/clip_*.wav"))
        assert len(clips) == RATE_LIMIT_CLIPS
    prompts = Counter(g["prompt"] for g in ledger["generations"])
    assert sorted(prompts.values()) == [1] * len(RATE_LIMIT_CASES) * RATE_LIMIT_CLIPS  # one per prompt
    assert len(accepted_posts) == len(RATE_LIMIT_CASES) * RATE_LIMIT_CLIPS
    # A 429 in one process pauses every process of the machine. The key with a budget is locked out
    # once at most (the bound; none in the runs so far). The key without one learns the
    # limit from its 429s: every process of the machine halves its rate on each. Its first 429
    # measures what the machine sent in the fan-out's first second (the 6 submits the limit
    # allows and the one refused: 7 a second), and 7 takes three halvings to come under 1.2 a
    # second (3.5, 1.75, 0.875) while the submits and polls still want more: three at most.
    assert per_key["stack_rate_limit_budgeted"]["lockouts"] <= 1, figures["keys"]
    assert per_key["stack_rate_limit_unbudgeted"]["lockouts"] <= 3, figures["keys"]
    # The scenario's own sizing: the limit said no to a key at least once, so the 429s were met.
    assert sum(entry["requests_limited"] for entry in per_key.values()) >= 1, figures["keys"]


def test_triggers_move_to_the_other_triggerer_when_theirs_is_killed(stack: Stack, figures) -> None:
    count = 10
    fresh_emulator(stack, generation_seconds=60)
    run_id = stack.trigger("stack_fanout", {"count": count})

    def all_waiting_in_triggerers() -> bool:
        tis = [t for t in stack.task_instances("stack_fanout", run_id) if t["task_id"] == "generate"]
        assigned = stack.psql("select count(*) from trigger where triggerer_id is not null")
        return len(tis) == count and all(t["state"] == "deferred" for t in tis) and int(assigned) == count

    stack.wait_for(all_waiting_in_triggerers, "every generation to wait in a triggerer", 300)
    holders = Counter(int(r) for r in stack.psql("select triggerer_id from trigger").split())
    jobs = stack.state["triggerer_jobs"]
    victim = max(jobs, key=lambda name: holders.get(jobs[name], 0))
    survivor = next(name for name in jobs if name != victim)
    stack.kill(victim, 9)  # the whole process group: the supervisor and its trigger runner
    killed_at = time.monotonic()

    def taken_over() -> bool:
        rows = stack.psql("select triggerer_id from trigger").split()
        return bool(rows) and all(int(r) == jobs[survivor] for r in rows)

    stack.wait_for(taken_over, f"{survivor} to take the triggers of {victim}", 120)
    takeover = time.monotonic() - killed_at
    seen = watch(stack, "stack_fanout", run_id)

    assert seen["state"] == "success"
    generates = [ti for ti in seen["task_instances"] if ti["task_id"] == "generate"]
    assert {ti["state"] for ti in generates} == {"success"}
    assert {ti["try_number"] for ti in generates} == {1}
    assert len(posts(stack)) == count  # nothing submitted again
    figures.update(
        triggers_moved=holders[jobs[victim]],
        takeover_seconds=round(takeover, 1),
        posts=len(posts(stack)),
        heartbeat_settings="job_heartbeat_sec=2, triggerer_health_check_threshold=15",
    )


def test_task_of_a_killed_celery_worker_is_retried_and_reattaches_to_its_generation(
    stack: Stack, figures
) -> None:
    if not stack.celery:
        pytest.skip("CeleryExecutor only: make test-stack EXECUTOR=celery")
    fresh_emulator(stack, generation_seconds=30)
    run_id = stack.trigger("stack_worker_kill")

    def waiting_on_its_worker() -> bool:  # submitted, its id saved, polling from the worker
        generations = stack.emulator("GET", "ledger")["generations"]
        return bool(generations) and generations[0]["polls"] >= 1

    stack.wait_for(waiting_on_its_worker, "the task to wait for its generation on a worker", 300)
    (ti,) = stack.task_instances("stack_worker_kill", run_id)
    assert ti["state"] == "running"
    worker = stack.session_of(ti["pid"])
    assert worker is not None, f"task process {ti['pid']} is in no session the stack started"
    assert worker.startswith("celery-worker-")
    killed = stack.kill_session(worker)  # SIGKILL: the worker, its pool and the task process
    killed_at = time.monotonic()
    try:
        seen = watch(stack, "stack_worker_kill", run_id)
    finally:
        stack.start_celery_worker(worker)  # back to two workers for what follows
    figures.update(
        processes_killed=len(killed),
        run_end_after_the_kill_seconds=round(time.monotonic() - killed_at, 1),
        heartbeat_settings="task_instance_heartbeat_timeout=20, detection interval 5",
    )

    assert seen["state"] == "success"
    (ti,) = seen["task_instances"]
    assert ti["try_number"] == 2  # the killed try failed on its missing heartbeat and was retried
    figures.update(posts=len(posts(stack)), tries=ti["try_number"])
    if durable_task_state(stack):
        assert len(posts(stack)) == 1  # the retry waited for the generation the killed try paid for
    else:
        assert len(posts(stack)) == 2
    (clip,) = (stack.output / "stack_worker_kill").glob("*/clip.wav")
    assert seconds_of(clip) == 2


def test_canary_keys_are_only_in_the_encrypted_connection_rows(stack: Stack) -> None:
    from cryptography.fernet import Fernet

    keys = {"stableaudio_default": stack.state["api_key"]}
    for dag_id, key in stack.state.get("rate_limit_keys", {}).items():
        keys[RATE_LIMIT_CASES[dag_id][0]] = key
    leaks = []
    for folder in (stack.logs, stack.airflow_home, stack.output):
        for path in folder.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                leaks += [
                    f"{path}: {conn_id}'s key" for conn_id, key in keys.items() if key.encode() in content
                ]
    assert leaks == []
    dump = stack.pg_dump()
    # XComs, trigger kwargs, rendered fields, logs tables: nowhere
    assert [conn_id for conn_id, key in keys.items() if key in dump] == []
    for conn_id, key in keys.items():
        password, encrypted = stack.psql(
            f"select password, is_encrypted from connection where conn_id = '{conn_id}'"
        ).split("|")
        assert encrypted == "t"
        assert Fernet(stack.state["fernet_key"].encode()).decrypt(password.encode()).decode() == key


# The try that a scenario fails on purpose (its download refused): its task log, and its lines that
# the scheduler's log repeats, hold the provider's error.
# The same for the try that the Celery scenario kills with its worker.
EXPECTED_FAILURES = re.compile(r"dag_id=stack_(retry|worker_kill)/.*/attempt=1\.log$")
EXPECTED_FAILURE_LINE = re.compile(r"dag_id=stack_(retry|worker_kill)\b.*\btry_number=1\b")
# asyncio's debug mode names the task that held the loop; a trigger's task is named "dag/run/... (ID n)".
SLOW_CALLBACK = re.compile(r"Executing <Task .*took \d")
ERROR_LINE = re.compile(r"\[(error|critical)\s*\]|\"level\":\s*\"(error|critical)\"|\bERROR\b|\bCRITICAL\b")
OURS = re.compile(r"stableaudio|StableAudio|stable_audio|audio_file|XCom not found", re.IGNORECASE)


def test_component_logs_hold_no_error_from_the_provider_and_no_blocked_loop(stack: Stack, figures) -> None:
    components = ["api-server", "scheduler", "dag-processor", "triggerer-1", "triggerer-2"]
    components += [name for name in stack.state["pids"] if name.startswith("celery-worker-")]
    task_logs = [
        p for p in (stack.airflow_home / "logs").rglob("*.log") if not EXPECTED_FAILURES.search(str(p))
    ]
    problems = []
    for path in [stack.logs / f"{name}.log" for name in components] + task_logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if EXPECTED_FAILURE_LINE.search(line):
                continue
            ours = OURS.search(line) or "airflow_provider_stableaudio" in line
            if (ERROR_LINE.search(line) and ours) or ("Traceback" in line and ours):
                problems.append(f"{path}:{number}: {line[:300]}")
            if "airflow_provider_stableaudio/" in line and 'File "' in line:
                problems.append(f"{path}:{number}: traceback frame: {line[:300]}")
    triggerer_lines = [
        line
        for name in ("triggerer-1", "triggerer-2")
        for line in (stack.logs / f"{name}.log").read_text(errors="replace").splitlines()
    ] + [
        line
        for p in task_logs
        if ".trigger." in p.name
        for line in p.read_text(errors="replace").splitlines()
    ]
    # The watchdog (threshold 0.15 s: 50 ms beyond its own 0.1 s sleep) cannot say what held the loop,
    # and asyncio's debug mode only names the task: a trigger's task runs Airflow's wrapper around the
    # trigger. The loop diagnostics say what the loop thread did (docs/compatibility.md): a stall is
    # this provider's when its code is on the sampled stack and the loop thread itself computed for
    # 50 ms or more of it (its CPU time less the garbage collections it ran). Waiting for a CPU (2
    # loaded cores), or for the GIL while another thread collected garbage, is no code's holding.
    watchdog = [line for line in triggerer_lines if "async thread was blocked" in line]
    slow = [line for line in triggerer_lines if SLOW_CALLBACK.search(line)]
    slow_triggers = [line for line in slow if "(ID " in line or "airflow_provider_stableaudio" in line]
    stalls = [describe_stall(record) for record in loop_diagnostics(stack, "stall")]
    collections = loop_diagnostics(stack, "collection")
    figures.update(
        task_logs_read=len(task_logs),
        watchdog_lines=len(watchdog),
        slow_callbacks_in_triggers=len(slow_triggers),
        slow_callbacks_elsewhere=len(slow) - len(slow_triggers),
        stalls=[stall["summary"] for stall in stalls],
        garbage_collections_over_50ms=[
            f"{c['took']}s gen {c['generation']} in {c['thread']}" for c in collections
        ],
    )
    assert problems == []
    assert sync_sends_from_the_provider(stack) == []
    assert [stall["summary"] for stall in stalls if stall["ours"]] == []


def describe_stall(record: dict[str, Any]) -> dict[str, Any]:
    """One line on a stall: what held the loop, and whether it was this provider's code."""
    seconds = record.get("seconds") or {}
    collected = record["garbage_collections"]
    in_loop_thread = sum(c["cpu_seconds"] for c in collected if c["thread"] == record["thread"])
    elsewhere = sum(c["seconds"] for c in collected if c["thread"] != record["thread"])
    computing = max(0.0, seconds.get("on_cpu", record["took"]) - in_loop_thread)
    sampled = [stack["frames"] for stack in record["stacks"]]
    ours_on_stack = any(in_package(frames) for frames in sampled)
    # A trigger's step that computed with no sample taken counts against the provider: it may be its code.
    ours = computing >= STALL and (ours_on_stack or (not sampled and "(ID " in record["callback"]))
    name = re.search(r"name='([^']*)'", record["callback"])
    where = "no sample"
    if sampled:
        top = max(record["stacks"], key=lambda stack: stack["count"])["frames"]
        code = [f for f in top if "/asyncio/" not in f and "/traceback.py" not in f and "linecache" not in f]
        where = " <- ".join(f.split("site-packages/")[-1] for f in reversed((code or top)[-3:]))
    summary = (
        f"{record['took']}s in {name.group(1) if name else record['callback'][:80]}: "
        f"computing {computing:.3f}s, waiting for a CPU {seconds.get('waiting_for_a_cpu', '?')}s, "
        f"blocked or waiting for the GIL {seconds.get('blocked_or_waiting_for_the_gil', '?')}s, "
        f"garbage collection {in_loop_thread:.3f}s CPU in the loop's thread, {elsewhere:.3f}s in others; "
        f"{record['samples']} samples, mostly at {where}" + ("; THE PROVIDER'S CODE" if ours else "")
    )
    return {"ours": ours, "summary": summary}
