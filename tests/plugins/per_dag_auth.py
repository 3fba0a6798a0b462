"""The simple auth manager with per-DAG access, as FAB or Keycloak give it: the case the page must honour.

Airflow's simple auth manager grants by role only; this one also hides DAGs from named users, through
the same ``is_authorized_dag`` every auth manager implements (``get_authorized_dag_ids`` calls it).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

#: user name -> the DAGs that user may not read.
HIDDEN: dict[str, set[str]] = {"outsider": {"clips_secret"}}


class PerDagAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if details is not None and details.id in HIDDEN.get(user.get_name(), set()):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
