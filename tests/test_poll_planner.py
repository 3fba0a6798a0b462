"""Polls by need: when a wait polls, from what its event loop has seen finish (pure)."""

from __future__ import annotations

import pytest

from airflow_provider_stableaudio.poll_planner import PollPlanner, group_key

GROUP = group_key("aimlapi", "stable-audio", 30)


def planner_with(waits: int) -> PollPlanner:
    planner = PollPlanner()
    for n in range(waits):
        planner.join(GROUP, f"g{n}")
    return planner


def first_polls(planner: PollPlanner, waits: int, now: float = 0.0) -> list[float | None]:
    return [
        planner.next_poll(GROUP, f"g{n}", submitted_at=0.0, last_poll=None, poll_interval=2, now=now)
        for n in range(waits)
    ]


def test_a_group_that_saw_nothing_finish_polls_only_through_its_oldest_few() -> None:
    polls = first_polls(planner_with(100), 100)
    scouts = [when for when in polls if when is not None]
    assert len(scouts) == 10  # the square root of 100
    assert polls[:10] == scouts  # the oldest
    assert all(0 <= when <= 2 for when in scouts)  # spread over one interval


def test_a_scout_that_leaves_hands_its_place_to_the_next_wait() -> None:
    planner = planner_with(9)
    assert first_polls(planner, 9)[3] is None
    held, other = planner.held(GROUP, "g3"), planner.held(GROUP, "g4")
    planner.leave(GROUP, "g0")  # 8 waits: 3 scouts, g1 to g3
    assert held.is_set()  # it looks again
    assert not other.is_set()  # still no scout: left alone
    assert first_polls(planner, 9)[3] is not None


def test_a_held_wait_becomes_a_scout_as_waits_join_after_it() -> None:
    # The triggerer starts waits one by one: the third to join is held (3 waits, 2 scouts), and
    # becomes a scout when the fifth joins (3 scouts); the fourth stays held.
    planner = PollPlanner()
    for n in range(4):
        planner.join(GROUP, f"g{n}")
    assert first_polls(planner, 4)[2:] == [None, None]
    third, fourth = planner.held(GROUP, "g2"), planner.held(GROUP, "g3")
    planner.join(GROUP, "g4")
    assert third.is_set()
    assert not fourth.is_set()
    assert first_polls(planner, 3)[2] is not None


def test_once_waits_finished_no_wait_polls_before_the_earliest_time_seen() -> None:
    planner = planner_with(100)
    held = planner.held(GROUP, "g50")
    # Scouts seen unfinished at 20.1 s and finished at 22 s; another at 24.5 s then 26 s.
    planner.finished(GROUP, not_ready_at=20.1, ready_at=22.0)
    planner.finished(GROUP, not_ready_at=24.5, ready_at=26.0)
    assert held.is_set()  # held waits look again
    assert planner.earliest(GROUP, poll_interval=2) == pytest.approx(20.1)
    polls = first_polls(planner, 100, now=23.0)
    assert all(when == 23.0 for when in polls)  # every wait, at once: they are due
    assert first_polls(planner, 1, now=5.0) == [pytest.approx(20.1)]  # a young one: not before
    later = planner.next_poll(GROUP, "g1", submitted_at=0.0, last_poll=23.0, poll_interval=2, now=23.0)
    assert later is not None
    assert 23.0 + 1.8 <= later <= 25.0


def test_only_close_bounds_teach_the_earliest_time() -> None:
    planner = planner_with(3)
    # Seen unfinished at 1 s and finished at 40 s: the poll came late, 1 s says nothing.
    planner.finished(GROUP, not_ready_at=1.0, ready_at=40.0)
    # Found finished on its first poll.
    planner.finished(GROUP, not_ready_at=None, ready_at=31.0)
    assert planner.earliest(GROUP, poll_interval=2) == pytest.approx(29.0)  # first finish, less one interval


def test_the_earliest_time_is_a_low_quantile_not_the_single_fastest() -> None:
    planner = planner_with(1)
    planner.finished(GROUP, not_ready_at=3.0, ready_at=4.0)  # one fast outlier
    for n in range(30):
        planner.finished(GROUP, not_ready_at=30.0 + n, ready_at=31.0 + n)
    earliest = planner.earliest(GROUP, poll_interval=2)
    assert earliest is not None
    assert 30.0 <= earliest <= 34.0


def test_groups_are_kept_apart_by_model_and_clip_length() -> None:
    planner = planner_with(1)
    planner.finished(GROUP, not_ready_at=20.0, ready_at=21.0)
    assert group_key("aimlapi", "stable-audio", 20) == GROUP  # 20 s and 30 s clips: one group
    for other in (group_key("aimlapi", "stable-audio", 190), group_key("stability", "stable-audio", 30)):
        assert planner.earliest(other, poll_interval=2) is None
    assert group_key("aimlapi", None, None) != GROUP
