"""The spec's `study_storage:` (and `hidden sweep run --study-storage`): is it a URL Optuna can
open? Checked before anything starts; SQLAlchemy is imported only here, and only if installed."""

from __future__ import annotations

import re

from hidden_core.config import brief, clip


def storage_url_problems(url: str, path: str) -> list[str]:
    """Why `url` cannot be an Optuna storage (an SQLAlchemy URL of an installed driver), or []."""
    if not re.fullmatch(r"[a-z][a-z0-9+]*://\S*", url):
        return [f"{path}: {brief(url)} is not a database URL (e.g. sqlite:///studies.db, postgresql://host/db)"]
    try:
        from sqlalchemy.engine import make_url

        make_url(url).get_dialect()
    except ImportError:
        return []  # Optuna not installed here: the runner reports it
    except Exception as err:  # sqlalchemy's ArgumentError / NoSuchModuleError
        return [f"{path}: {brief(url)} is not a usable database URL ({clip(str(err).splitlines()[0] if str(err) else type(err).__name__, 120)})"]
    return []
