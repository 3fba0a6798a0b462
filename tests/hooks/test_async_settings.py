"""Triggers that start together on one event loop read their connection once (``aget_settings``)."""

from __future__ import annotations

import asyncio

import pytest
from airflow.providers.common.compat import connection as compat_connection

from airflow_provider_stableaudio.hooks import base as hook_base
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from tests.conftest import API_KEY, set_connection


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The connection ids Airflow was asked for, in order; the reuse as in production."""
    monkeypatch.setattr(hook_base, "SETTINGS_REUSE_SECONDS", 30.0)
    asked: list[str] = []
    real = compat_connection.get_async_connection

    async def counted(conn_id: str, **kwargs: object):
        asked.append(conn_id)
        await asyncio.sleep(0.05)  # a lookup takes a while: the others come while it runs
        return await real(conn_id, **kwargs)

    monkeypatch.setattr(compat_connection, "get_async_connection", counted)
    return asked


@pytest.mark.asyncio
async def test_a_fan_out_of_triggers_reads_the_connection_once(connection, lookups: list[str]) -> None:
    settings = await asyncio.gather(*(StableAudioHook().aget_settings() for _ in range(50)))
    assert lookups == ["stableaudio_default"]
    assert {s.api_key for s in settings} == {API_KEY}


@pytest.mark.asyncio
async def test_a_trigger_starting_after_the_reuse_time_sees_the_changed_connection(
    connection, lookups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await StableAudioHook().aget_settings()).api_key == API_KEY
    set_connection(monkeypatch, host=connection.base_url, password="rotated-key-77")
    assert (await StableAudioHook().aget_settings()).api_key == API_KEY  # within the reuse time
    monkeypatch.setattr(hook_base, "SETTINGS_REUSE_SECONDS", 0.0)
    assert (await StableAudioHook().aget_settings()).api_key == "rotated-key-77"
    assert lookups == ["stableaudio_default", "stableaudio_default"]


@pytest.mark.asyncio
async def test_a_failed_lookup_is_not_reused(monkeypatch: pytest.MonkeyPatch, lookups: list[str]) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_STABLEAUDIO_DEFAULT", raising=False)
    for _ in range(2):
        with pytest.raises(Exception, match="stableaudio_default"):
            await StableAudioHook().aget_settings()
    assert lookups == ["stableaudio_default", "stableaudio_default"]
