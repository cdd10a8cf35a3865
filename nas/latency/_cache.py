"""Persistent latency cache: one SQLite file shared by runs, processes and workers.

A measurement is keyed by what was measured (arch hash, block key or file hash), the
target's hash, the runtime library versions and the CPU model, so the same thing is never
measured twice on the same machine and software, and never reused across them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from nas.data import cache_root

PROTOCOL_VERSION = 4  # bump when the measurement protocol changes meaning


class LatencyCache:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cache_root() / "latency.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS latency (
                key TEXT PRIMARY KEY, subject TEXT, target TEXT, environment TEXT,
                stats TEXT, created TEXT)""")
            db.execute("""CREATE TABLE IF NOT EXISTS calibration (
                key TEXT PRIMARY KEY, target TEXT, nominal_ms REAL, rounds TEXT,
                created TEXT)""")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def key(subject: str, target_hash: str, environment: dict[str, Any]) -> str:
        blob = json.dumps([subject, target_hash, environment, PROTOCOL_VERSION], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT stats FROM latency WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(
        self,
        key: str,
        subject: str,
        target: str,
        environment: dict[str, Any],
        stats: dict[str, Any],
    ) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    subject,
                    target,
                    json.dumps(environment, sort_keys=True),
                    json.dumps(stats),
                    now,
                ),
            )

    def nominal(self, key: str) -> float | None:
        """The calibrated reference time for ``key`` (target and environment), if any."""
        with self._connect() as db:
            row = db.execute("SELECT nominal_ms FROM calibration WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else None

    def set_nominal(self, key: str, target: str, nominal_ms: float, rounds: list[float]) -> float:
        """Store a calibration unless one exists (the first one stays: values stay comparable);
        returns the stored value."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO calibration VALUES (?, ?, ?, ?, ?)",
                (key, target, nominal_ms, json.dumps(rounds), now),
            )
        stored = self.nominal(key)
        assert stored is not None
        return stored

    def lower_nominal(self, key: str, nominal_ms: float) -> float:
        """Lower a stored calibration to ``nominal_ms`` if that is below it (for a fastest
        reading so far); returns the stored value."""
        with self._connect() as db:
            db.execute(
                "UPDATE calibration SET nominal_ms = ? WHERE key = ? AND nominal_ms > ?",
                (nominal_ms, key, nominal_ms),
            )
        stored = self.nominal(key)
        return nominal_ms if stored is None else stored

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM latency").fetchone()[0])
