"""Storage: one interface (`Store`), on SQLite or PostgreSQL, chosen by URL."""

from __future__ import annotations

from flowforge.store.base import Store


def open_store(url: str, *, pool_size: int | None = None, application_name: str | None = None) -> Store:
    """Open (and migrate) the store that `url` names: `sqlite:///path`, `sqlite://:memory:`, `postgresql://…`.

    `pool_size` bounds a PostgreSQL store's connections (SQLite has one connection), which show
    as `application_name` in pg_stat_activity.
    Raises ValueError for a bad URL or for PostgreSQL without the `postgres` extra, and
    core.errors.Unavailable when the database cannot be reached.
    """
    if url.startswith("sqlite:"):
        from flowforge.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        # Imported here: psycopg comes with the `postgres` extra, needed only by deployments on PostgreSQL.
        try:
            from flowforge.store.postgres import APPLICATION_NAME, DEFAULT_POOL_SIZE, PostgresStore
        except ImportError as exc:
            raise ValueError(
                f"PostgreSQL needs the postgres extra: pip install 'flowforge[postgres]' ({exc})"
            ) from None

        return PostgresStore.from_url(
            url,
            pool_size=pool_size or DEFAULT_POOL_SIZE,
            application_name=application_name or APPLICATION_NAME,
        )
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unsupported store URL scheme {scheme!r} in FLOWFORGE_DB (expected sqlite:///PATH or postgresql://HOST/DB)"
    )


__all__ = ["Store", "open_store"]
