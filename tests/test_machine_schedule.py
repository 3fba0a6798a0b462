"""The processes of one machine share a key's turns and pauses (``machine_schedule``).

Two schedules opened on one file stand for two processes: ``flock`` locks belong to the open file,
so they exclude each other as two processes' would. The last test runs real processes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_stableaudio.machine_schedule import HORIZON, MachineSchedule, Turn
from airflow_provider_stableaudio.request_budget import KeyBudget, Slot
from tests.conftest import API_KEY, ROOT


def two_processes(directory: Path) -> tuple[MachineSchedule, MachineSchedule]:
    return MachineSchedule(str(directory), "key"), MachineSchedule(str(directory), "key")


def test_a_turn_taken_in_one_process_holds_the_others_next_request_back(tmp_path: Path) -> None:
    first, second = two_processes(tmp_path / "shared")
    assert first.turn(100.0, 2.0) == Turn(0.0)
    assert second.turn(100.5, 2.0) == Turn(1.5)  # not taken: asked again when due
    assert second.turn(102.0, 2.0) == Turn(0.0)
    assert first.turn(103.0, 2.0) == Turn(1.0)


def test_a_429_in_one_process_holds_every_process_and_tells_the_rate_the_machine_sent(
    tmp_path: Path,
) -> None:
    first, second = two_processes(tmp_path / "shared")
    for n in range(8):  # both processes, 8 turns in 4 s: 2 a second
        assert (first if n % 2 else second).turn(96.0 + n * 0.5, 0.5).wait == 0
    assert first.refused(100.0, 110.0) == (pytest.approx(2.0), 100.0, True)
    assert first.refused(100.5, 105.0) == (pytest.approx(2.0), 100.0, False)  # sent before the pause
    assert second.turn(101.0, 0.1) == Turn(9.0, 110.0, pytest.approx(2.0), 100.0)
    assert second.turn(110.0, 0.1).wait == 0


def test_figures_from_before_the_clock_restarted_are_ignored(tmp_path: Path) -> None:
    first, second = two_processes(tmp_path / "shared")
    first.refused(100.0, 100.0 + HORIZON + 1)
    assert second.turn(100.0, 1.0) == Turn(0.0)


def test_a_schedule_file_of_the_version_before_the_count_of_turns_is_read(tmp_path: Path) -> None:
    first, second = two_processes(tmp_path / "shared")
    first.refused(100.0, 110.0)
    path = Path(first.path)
    path.write_bytes(path.read_bytes()[:64])  # the eight figures that version wrote
    assert second.turn(101.0, 1.0).paused_until == 110.0


def test_a_folder_others_may_write_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # past the umask: any user of the machine could write here
    first, second = two_processes(shared)
    with caplog.at_level(logging.WARNING):
        first.refused(100.0, 110.0)
        assert second.turn(101.0, 1.0) == Turn(0.0)  # each process on its own
    assert list(shared.iterdir()) == []
    assert "not a folder of this user's alone" in caplog.text


def test_the_schedule_file_is_named_one_way_and_readable_by_its_user_only(tmp_path: Path) -> None:
    from airflow_provider_stableaudio.request_budget import budget_for
    from airflow_provider_stableaudio.services import AIMLAPI, SERVICES

    budget = budget_for(
        "https://api.example.test",
        API_KEY,
        max_rate=5,
        service=SERVICES[AIMLAPI],
        machine_directory=lambda: str(tmp_path / "shared"),
    )
    assert isinstance(budget.take(100.0), Slot)
    (schedule,) = (tmp_path / "shared").iterdir()
    assert API_KEY not in schedule.name
    assert schedule.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared").stat().st_mode & 0o077 == 0


def budgets(directory: Path, *, max_rate: float | None) -> tuple[KeyBudget, KeyBudget]:
    return tuple(  # type: ignore[return-value]
        KeyBudget(label="key", max_rate=max_rate, lockout_seconds=None, machine=machine)
        for machine in two_processes(directory)
    )


def send(budget: KeyBudget, now: float, *, count: int, every: float) -> float:
    """``count`` requests answered, one every ``every`` seconds from ``now``; the time after them."""
    for _ in range(count):
        send_one(budget, now, limited=False)
        now += every
    return now


def send_one(budget: KeyBudget, now: float, *, limited: bool, retry_after: float = 10) -> float:
    """One request, answered (``limited``: 429 with ``Retry-After``); the seconds paused."""
    slot = budget.take(now)
    assert isinstance(slot, Slot)
    return budget.answered(slot, now, limited=limited, retry_after=retry_after)


def test_two_processes_budgets_of_one_key_together_keep_to_its_rate(tmp_path: Path) -> None:
    first, second = budgets(tmp_path / "shared", max_rate=2.0)
    assert isinstance(first.take(100.0), Slot)
    assert second.take(100.0) == pytest.approx(0.5)  # the machine's rate, not each process's
    assert isinstance(second.take(100.5), Slot)
    assert first.take(100.5) == pytest.approx(0.5)


def test_a_429_in_one_process_pauses_the_others_and_lowers_their_rate(tmp_path: Path) -> None:
    first, second = budgets(tmp_path / "shared", max_rate=4.0)
    now = send(second, 100.0, count=8, every=0.25)  # the second process sends at its rate, four a second
    assert send_one(first, now, limited=True) == 10
    assert second.take(now + 0.25) == pytest.approx(9.75)
    assert second.paused_for(now + 0.25) == pytest.approx(9.75)
    assert second.rate == pytest.approx(2.0)  # half of the lower of its rate and what the machine sent
    # A task process that starts after the pause learns it as well: it does not start at its figure.
    (third, _) = budgets(tmp_path / "shared", max_rate=4.0)
    assert isinstance(third.take(now + 10), Slot)
    assert third.rate == pytest.approx(2.0)


def test_a_probe_refused_as_a_pause_ends_leaves_the_rate_the_key_was_refused_at(tmp_path: Path) -> None:
    # 150 requests in 10 s, refused; the pause ends 16 s later; the one probe is refused again. A process
    # that starts then learns 15 a second, not the 1 a second the probe went at. (It learned 1 and
    # crawled at half a request a second: a benchmark row took 364 s for 300 clips of 20-40 s.)
    first, second = budgets(tmp_path / "shared", max_rate=None)
    now = send(first, 90.0, count=150, every=1 / 15)
    assert send_one(first, now, limited=True, retry_after=16) == 16
    assert send_one(first, now + 16, limited=True, retry_after=32) == 32  # the probe
    assert isinstance(second.take(now + 48.1), Slot)
    assert second.rate == pytest.approx(7.5, rel=0.05)  # halved once from 15


def test_a_429_at_a_lower_rate_than_the_last_lowers_every_process_and_caps_their_growth(
    tmp_path: Path,
) -> None:
    # Only a higher rate than the highest refused was news: a process that did not meet a second
    # 429 kept its rate, and every process crept back up to 90 % of the first rate refused, which
    # a fan-out's first seconds measure high (3 and 4 lockouts in tier runs).
    first, second = budgets(tmp_path / "shared", max_rate=None)
    now = send(second, 100.0, count=16, every=0.125)  # 8 a second from the second process
    send_one(first, now, limited=True)
    now += 10
    assert isinstance(second.take(now), Slot)  # the pause is over; it learned the first 429
    assert second.rate == first.rate == pytest.approx(4.0, rel=0.1)
    send_one(first, now + 1, limited=False)  # the probe
    now = send(second, now + 2, count=20, every=0.5)  # 2 a second for 10 s
    assert send_one(first, now, limited=True) == 10  # refused again, at 2 a second
    assert isinstance(second.take(now + 10), Slot)
    assert second.rate == first.rate == pytest.approx(1.0, rel=0.1)  # halved from 2, not from 8
    # Growing back while its callers want more, it stops at 90 % of the 2 a second refused last.
    clock = now + 10
    while clock < now + 100:
        slot = first.take(clock)
        if isinstance(slot, Slot):
            first.answered(slot, clock, limited=False)
        clock += 0.05
    assert first.rate == pytest.approx(1.8, rel=0.1)
    # A process that starts later starts at half of it too.
    (third, _) = budgets(tmp_path / "shared", max_rate=None)
    assert isinstance(third.take(clock + 1), Slot)
    assert third.rate == pytest.approx(1.0, rel=0.1)


def test_a_processs_first_request_after_a_pause_it_adopted_is_measured_once_others_have_sent(
    tmp_path: Path,
) -> None:
    # It is that process's probe, not the machine's: a task process's one submit, refused after
    # the others sent six, taught no process anything, and the key was locked out again at the
    # same rate (3 lockouts in a tier run).
    first, second = budgets(tmp_path / "shared", max_rate=None)
    now = send(first, 100.0, count=16, every=0.125)  # 8 a second
    send_one(first, now, limited=True)
    assert second.take(now + 1) == pytest.approx(9)  # the second process adopts the pause
    now += 10
    assert first.rate == pytest.approx(4.0, rel=0.1)
    now = send(first, now, count=8, every=0.25)  # the probe, then 4 a second for 2 s
    assert send_one(second, now, limited=True) == 10  # its first request since, refused
    assert second.rate == pytest.approx(2.1, rel=0.05)  # halved, from 4.25 (what it had learned)
    assert isinstance(first.take(now + 10), Slot)
    assert first.rate == pytest.approx(2.1, rel=0.05)  # and the other process learned it


def test_a_figure_written_a_moment_after_the_callers_clock_was_read_is_kept(tmp_path: Path) -> None:
    first, second = two_processes(tmp_path / "shared")
    for n in range(4):
        first.turn(98.0 + n * 0.5, 0.5)
    first.refused(100.5, 110.5)
    turn = second.turn(100.4, 1.0)  # read its clock before the other process wrote
    assert (turn.wait, turn.paused_until, turn.refused_at) == (pytest.approx(10.1), 110.5, 100.5)


def test_a_pause_adopted_from_another_process_ends_when_its_does(tmp_path: Path) -> None:
    first, second = budgets(tmp_path / "shared", max_rate=4.0)
    slot = first.take(100.0)
    assert isinstance(slot, Slot)
    first.answered(slot, 100.0, limited=True, retry_after=1)
    assert second.take(100.7) == pytest.approx(0.3)  # not lengthened to a pause of its own
    assert isinstance(first.take(101.0), Slot)  # the probe; the other process's next turn after it
    assert second.take(101.0) > 0


@pytest.mark.default_budget
def test_task_processes_of_one_machine_submit_inside_the_keys_limit_together(
    emulator, tmp_path: Path
) -> None:
    """Three worker processes submit at once on one key with ``max_requests_per_second`` 2 against a
    limit of 7 in 2 s: together at 2 a second (4 or 5 in any 2 s), the key is never refused. With
    the schedule turned off (each process at 2 a second: 6 together) the same run is refused.

    The 2 or 3 requests a window has to spare let a request reach the emulator a second after its
    turn: on a loaded machine it may (a limit of 6 a second against 4, 1 or 2 to spare, failed once
    beside the real-stack tier)."""

    def run(shared: str) -> dict:
        emulator.clear_rate_limit()
        emulator.set_rate_limit(limit_requests=7, limit_window_seconds=2, limit_lockout_seconds=2)
        before = counts()
        env = {
            **os.environ,
            "AIRFLOW__STABLEAUDIO__BUDGET_DIR": shared,
            "AIRFLOW_CONN_STABLEAUDIO_DEFAULT": json.dumps(
                {
                    "conn_type": "stableaudio",
                    "host": emulator.base_url,
                    "password": API_KEY,
                    "extra": {"max_requests_per_second": 2},
                }
            ),
            "PYTHONPATH": str(ROOT),
        }
        script = textwrap.dedent(
            """
            import sys
            from airflow_provider_stableaudio.generation_request import GenerationRequest
            from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook

            hook = StableAudioHook()
            request = GenerationRequest.build(prompt="a short bell", seconds_total=2)
            hook.settings  # the connection read before the start: the submits go together
            print("ready", flush=True)
            sys.stdin.readline()
            for _ in range(5):
                hook.submit_generation(request)
            """
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", script],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.wait(timeout=120) == 0
        after = counts()
        return {name: after[name] - before[name] for name in after}

    def counts() -> dict[str, int]:
        keys = emulator.ledger()["rate_limit"]["keys"]
        return {name: sum(key[name] for key in keys) for name in ("requests", "requests_limited")}

    shared = run(str(tmp_path / "shared"))
    alone = run("")
    emulator.clear_rate_limit()
    assert shared == {"requests": 15, "requests_limited": 0}
    assert alone["requests_limited"] > 0
