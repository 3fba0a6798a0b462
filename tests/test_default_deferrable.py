"""Deferral is our default, but a deployment's ``[operators] default_deferrable`` wins everywhere."""

from __future__ import annotations

import configparser
from collections.abc import Iterator

import pytest
from airflow.providers.common.compat.sdk import conf

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor
from tests.operators.test_stable_audio_operator import context, operator

VARIABLE = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"


def tasks(**kwargs: object) -> tuple[StableAudioGenerateOperator, StableAudioGenerationSensor]:
    return (
        StableAudioGenerateOperator(task_id="generate", prompt="x", **kwargs),  # type: ignore[arg-type]
        StableAudioGenerationSensor(task_id="wait", generation_id="g", **kwargs),  # type: ignore[arg-type]
    )


@pytest.fixture
def no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for suffix in ("", "_CMD", "_SECRET"):
        monkeypatch.delenv(VARIABLE + suffix, raising=False)
    # The tests' AIRFLOW_HOME has no airflow.cfg: only Airflow's built-in default is there.
    assert not configparser.RawConfigParser.has_option(conf, "operators", "default_deferrable")


@pytest.fixture
def in_airflow_cfg() -> Iterator[None]:
    """``default_deferrable = False`` as read from airflow.cfg (``conf.set`` stores it the same way)."""
    conf.set("operators", "default_deferrable", "False")
    try:
        yield
    finally:
        conf.remove_option("operators", "default_deferrable")


@pytest.mark.usefixtures("no_setting")
def test_tasks_defer_when_the_deployment_does_not_say() -> None:
    # Airflow's built-in default for the option is false: that is not the deployment saying so.
    assert conf.getboolean("operators", "default_deferrable") is False
    assert [task.deferrable for task in tasks()] == [True, True]


@pytest.mark.parametrize(("value", "expected"), [("False", False), ("false", False), ("True", True)])
def test_the_environment_sets_the_default_of_every_task(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv(VARIABLE, value)
    assert [task.deferrable for task in tasks()] == [expected, expected]


@pytest.mark.usefixtures("no_setting", "in_airflow_cfg")
def test_the_false_that_airflow_writes_into_airflow_cfg_keeps_deferral() -> None:
    # Airflow's CLI writes `default_deferrable = false` into every new airflow.cfg (the real-stack
    # tier's deployments have it, and their tasks defer): a false there is nobody's choice.
    assert [task.deferrable for task in tasks()] == [True, True]


@pytest.mark.parametrize("explicit", [True, False])
def test_an_explicit_argument_beats_the_deployment(monkeypatch: pytest.MonkeyPatch, explicit: bool) -> None:
    monkeypatch.setenv(VARIABLE, str(not explicit))
    assert [task.deferrable for task in tasks(deferrable=explicit)] == [explicit, explicit]


def test_with_deferral_off_the_operator_waits_on_the_worker(
    connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, "False")
    ctx = context()
    url = operator().execute(ctx)  # no TaskDeferred: it polled to completion here
    assert url == ctx["ti"].xcom("audio_file")["url"]


@pytest.mark.parametrize("task_class", [StableAudioGenerateOperator, StableAudioGenerationSensor])
def test_the_deferrable_docstring_says_what_the_code_reads(task_class: type) -> None:
    # The environment is read, airflow.cfg is not (see waiting.default_deferrable).
    doc = " ".join((task_class.__doc__ or "").split())
    deferrable = doc[doc.index(":param deferrable:") :].split(":param ", 2)[1]
    assert VARIABLE in deferrable
    assert "airflow.cfg`` is not read" in deferrable
    assert f"{VARIABLE}=false" in deferrable  # what a deployment without a triggerer sets
