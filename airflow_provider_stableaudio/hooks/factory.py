"""Which hook serves a connection: its type decides the service (for the operator, sensor and trigger)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.services import AIMLAPI, STABILITY, Service, service_for_conn_type

if TYPE_CHECKING:
    from airflow_provider_stableaudio.hooks.base import StableAudioBaseHook

# Imported with this module, not on first use: a trigger must not import on the triggerer's loop.
HOOKS: dict[str, type[StableAudioBaseHook]] = {AIMLAPI: StableAudioHook, STABILITY: StabilityAudioHook}


def hook_class(service: str) -> type[StableAudioBaseHook]:
    """The hook class of ``service`` (``aimlapi`` or ``stability``)."""
    try:
        return HOOKS[service]
    except KeyError:
        raise ValueError(f"unknown Stable Audio service {service!r}") from None


def connection_service(conn_id: str) -> Service:
    """The service the connection ``conn_id`` reaches, by its type (a synchronous lookup: workers only).

    :raises StableAudioConfigError: the connection's type reaches no Stable Audio service.
    """
    from airflow.sdk import BaseHook

    return service_for_conn_type(BaseHook.get_connection(conn_id).conn_type, conn_id=conn_id)
