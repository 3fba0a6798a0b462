"""The two places Stable Audio is served, and which Airflow connection type reaches each. No Airflow imports.

The connection's type decides the service; the model registry (:mod:`.models`) says which service
serves each model.
"""

from __future__ import annotations

from dataclasses import dataclass

AIMLAPI = "aimlapi"
STABILITY = "stability"


@dataclass(frozen=True)
class Service:
    """One service: how Airflow connections name it and where it answers.

    :param name: the provider's name for it (``aimlapi``, ``stability``).
    :param title: how messages and docs call it.
    :param conn_type: the Airflow connection type that reaches it.
    :param default_conn_id: the connection the provider uses when none is given.
    :param default_base_url: the Base URL when the connection's host is empty.
    :param key_name: what the key in the connection's password is called, for messages.
    :param lockout_seconds: how long the service refuses a key after answering 429, when the
        answer has no ``Retry-After``; ``None`` when the service documents no figure.
    :param default_requests_per_second: the most requests per second a process sends with one key
        when the connection does not say (extra ``max_requests_per_second``); ``None``: no limit is
        documented, so the rate adapts to the service's 429s.
    """

    name: str
    title: str
    conn_type: str
    default_conn_id: str
    default_base_url: str
    key_name: str
    lockout_seconds: float | None = None
    default_requests_per_second: float | None = None


SERVICES: dict[str, Service] = {
    AIMLAPI: Service(
        name=AIMLAPI,
        title="AI/ML API",
        conn_type="stableaudio",
        default_conn_id="stableaudio_default",
        default_base_url="https://api.aimlapi.com",
        key_name="AI/ML API key",
    ),
    STABILITY: Service(
        name=STABILITY,
        title="Stability AI API",
        conn_type="stability",
        default_conn_id="stability_default",
        default_base_url="https://api.stability.ai",
        key_name="Stability AI API key",
        # "You have exceeded the rate limit of 150 requests within a 10 second period, and have been
        # timed out for 60 seconds", with no Retry-After: a retry sooner only extends the lockout.
        lockout_seconds=60,
        # Two thirds of the documented 150 per 10 s: room for the workers' submits and fetches, and
        # for a second process, which each adapt on a 429.
        default_requests_per_second=10,
    ),
}


def service_for_conn_type(conn_type: str | None, *, conn_id: str) -> Service:
    """The service a connection of type ``conn_type`` reaches.

    :raises StableAudioConfigError: no service uses that connection type.
    """
    from airflow_provider_stableaudio.exceptions import StableAudioConfigError

    for service in SERVICES.values():
        if service.conn_type == conn_type:
            return service
    known = ", ".join(f"{s.conn_type!r} ({s.title})" for s in SERVICES.values())
    raise StableAudioConfigError(
        f"connection {conn_id!r} is of type {conn_type!r}, which reaches no Stable Audio service: "
        f"use a connection of type {known}"
    )
