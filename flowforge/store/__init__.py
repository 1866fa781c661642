"""Storage: one interface (`Store`), SQLite now and PostgreSQL later, chosen by URL."""

from __future__ import annotations

from .base import Store


def open_store(url: str) -> Store:
    """Open (and migrate) the store that `url` names: `sqlite:///path` or `sqlite://:memory:`."""
    if url.startswith("sqlite:"):
        from .sqlite import SqliteStore

        return SqliteStore.from_url(url)
    scheme = url.split(":", 1)[0]
    raise ValueError(f"unsupported store URL scheme {scheme!r} in FLOWFORGE_DB (expected sqlite:///PATH)")


__all__ = ["Store", "open_store"]
