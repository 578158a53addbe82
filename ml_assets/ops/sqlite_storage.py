"""The local instance's event log: Dagster's SQLite storage, with one reusable engine per database.

Dagster's ``SqliteEventLogStorage`` creates and disposes a SQLAlchemy engine for every read and write (NullPool),
and every asset event is written twice (the run's shard and the cross-run index). A year's range backfill records
tens of thousands of per-day events (materializations, check evaluations), so that set-up dominated: measured on
this machine, 15.6 ms per event stock against 3.7 ms with the engines kept (``bench/RESULTS.md``). This subclass
keeps the same files, schema, locking and durability (SQLite's defaults: rollback journal, synchronous FULL, so the
webserver's file watchers still see every write) and only keeps the engines of the recently used databases.

Selected in ``dagster.yaml`` (``storage: custom: ... PooledSqliteStorage``); the production instance uses Postgres.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from sqlalchemy import create_engine
from sqlalchemy.pool import QueuePool

OPEN_ENGINES = 8  # the index database and the shards of the runs in progress


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data=inst_data)
        self._engines: OrderedDict = OrderedDict()
        self._engines_lock = threading.Lock()

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteEventLogStorage:  # noqa: D102
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str):
        with self._engines_lock:
            engine = self._engines.pop(shard, None)
            if engine is None:
                engine = create_engine(self.conn_string_for_shard(shard), poolclass=QueuePool, pool_size=1,
                                       max_overflow=4, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                                                     "check_same_thread": False})
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
            self._engines[shard] = engine  # most recently used last
            while len(self._engines) > OPEN_ENGINES:
                _, old = self._engines.popitem(last=False)
                old.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def dispose(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()


class PooledSqliteStorage(DagsterSqliteStorage):
    """``storage: custom:`` in dagster.yaml: Dagster's SQLite storage (same layout) with the pooled event log."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteStorage:  # noqa: D102
        return cls.from_local(inst_data=inst_data, **config_value)
