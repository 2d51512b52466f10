"""The copy behind ``hexagone port-db`` (``homeserver/commands/port_db.py``): a stopped server's SQLite
database into a new PostgreSQL database.

The target's schema is made by applying every domain's migrations; rows are
then copied table by table in batches, in the order of the source's rowid.
Each batch and the record of how far its table got (``port_db_progress`` on
the target) commit together, so an interrupted port continues where it
stopped when run again. Finally every table's row count is compared; the
progress table is dropped once all match.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass

from homeserver.storage.database import Database
from homeserver.storage.schema import apply_migrations

PROGRESS_TABLE = "port_db_progress"
SCHEMA_TABLE = "schema_versions"
_TABLE_DDL = re.compile(
    r"^\s*(?:CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<create>\w+)"
    r"|DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<drop>\w+)"
    r"|ALTER\s+TABLE\s+(?P<old>\w+)\s+RENAME\s+TO\s+(?P<new>\w+))", re.IGNORECASE)


class PortError(Exception):
    """The port cannot go on; the message says why and what to do."""


def tables_from_migrations(domains: dict[str, list[str]]) -> list[str]:
    """Every table the migrations leave behind, in creation order."""
    tables: list[str] = []
    for migrations in domains.values():
        for script in filter(lambda m: isinstance(m, str), migrations):
            for statement in script.split(";"):
                m = _TABLE_DDL.match(statement)
                if m is None:
                    continue
                if m["create"]:
                    tables.append(m["create"])
                elif m["drop"]:
                    tables.remove(m["drop"])
                else:
                    tables[tables.index(m["old"])] = m["new"]
    return tables


@dataclass
class TablePlan:
    """How one table is read: its columns (as the target has them) and the source key to page by."""

    name: str
    columns: list[str]
    key: list[str]
    total: int


class Porter:
    """One port run: source and target databases, the tables, and where each table got to."""

    def __init__(self, source: Database, target: Database, tables: list[str], batch_size: int, err=sys.stderr):
        self.source = source
        self.target = target
        self.tables = tables
        self.batch_size = batch_size
        self.err = err
        self.nul_stripped = 0

    # -- preparation -------------------------------------------------------------------
    def check_source(self, domains: dict[str, list[str]]) -> None:
        present = {r[0] for r in self.source.run_sync("source_tables", lambda t: t.select_all(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table'"
            " AND name NOT LIKE 'sqlite_%'"))}  # not virtual tables (a search index) nor their shadows
        if SCHEMA_TABLE not in present:
            raise PortError("The SQLite database is not a Hexagone database (it has no schema_versions table).")
        versions = dict(self.source.run_sync("source_versions", lambda t: t.select_all(
            f"SELECT domain, version FROM {SCHEMA_TABLE}")))
        stale = [f"{d} (at {versions.get(d, 0)}, this version needs {len(m)})"
                 for d, m in domains.items() if versions.get(d, 0) != len(m)]
        if stale:
            raise PortError("The SQLite database's schema does not match this version of Hexagone: "
                            + ", ".join(stale) + ". Start the server on it once with this version "
                            "(it migrates at start-up), stop it, then port.")
        for name in sorted(present - set(self.tables) - {SCHEMA_TABLE}):
            print(f"warning: table {name} is not created by any migration; not copied", file=self.err)

    def prepare_target(self, domains: dict[str, list[str]]) -> bool:
        """Create the progress table and the schema; True when resuming an earlier run."""
        def txn_fn(txn):
            existing = {r[0] for r in txn.select_all(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
            if SCHEMA_TABLE in existing and PROGRESS_TABLE not in existing:
                raise PortError("The target database already holds a Hexagone database that port-db did not "
                                "create (or whose port finished). Port into a new, empty database.")
            txn.execute(f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (table_name TEXT PRIMARY KEY, "
                        "last_key TEXT, copied BIGINT NOT NULL, done INTEGER NOT NULL)")
            return PROGRESS_TABLE in existing

        resuming = self.target.run_sync("port_prepare", txn_fn)
        apply_migrations(self.target, domains)
        return resuming

    def plan(self, table: str) -> TablePlan:
        source_cols = [r[1] for r in self.source.run_sync("source_columns", lambda t: t.select_all(
            f"PRAGMA table_info({table})"))]
        target_cols = [r[0] for r in self.target.run_sync("target_columns", lambda t: t.select_all(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position", (table,)))]
        missing = [c for c in target_cols if c not in source_cols]
        if missing:
            raise PortError(f"Table {table}: columns {', '.join(missing)} exist in PostgreSQL but not in SQLite")
        total = self.source.run_sync("source_count", lambda t: t.select_value(f"SELECT COUNT(*) FROM {table}"))
        return TablePlan(table, target_cols, self._source_key(table), total)

    def _source_key(self, table: str) -> list[str]:
        """The rowid, or the primary key of a WITHOUT ROWID table."""
        def txn_fn(txn):
            if txn.select_value("SELECT COUNT(*) FROM pragma_table_list WHERE schema = 'main' AND name = ? AND wr = 0",
                                (table,)):
                return ["rowid"]
            rows = txn.select_all(f"PRAGMA table_info({table})")
            return [r[1] for r in sorted(rows, key=lambda r: r[5]) if r[5] > 0]

        return self.source.run_sync("source_key", txn_fn)

    # -- copying -----------------------------------------------------------------------
    def progress_of(self, table: str) -> tuple[list | None, int, bool]:
        row = self.target.run_sync("port_progress", lambda t: t.select_one(
            f"SELECT last_key, copied, done FROM {PROGRESS_TABLE} WHERE table_name = ?", (table,)))
        if row is None:
            return None, 0, False
        return (None if row[0] is None else json.loads(row[0])), row[1], bool(row[2])

    def copy_table(self, plan: TablePlan) -> None:
        last_key, copied, done = self.progress_of(plan.name)
        if done:
            print(f"{plan.name}: {copied} rows copied earlier", file=self.err)
            return
        bar = ProgressBar(self.err, plan.name, plan.total, plan.total > self.batch_size)
        bar.show(copied)
        while not done:
            rows = self._read_batch(plan, last_key)
            done = len(rows) < self.batch_size
            first = last_key is None
            if rows:
                last_key = list(rows[-1][:len(plan.key)])
            values = [self._clean(r[len(plan.key):]) for r in rows]
            copied += len(values)
            self.target.run_sync("port_batch", self._write_batch_txn, plan, values, first, last_key, copied, done)
            bar.show(copied)
        bar.finish(copied)

    def _read_batch(self, plan: TablePlan, last_key: list | None) -> list:
        key = ", ".join(plan.key)
        where = "" if last_key is None else f" WHERE ({key}) > ({', '.join('?' * len(plan.key))})"
        sql = (f"SELECT {key}, {', '.join(plan.columns)} FROM {plan.name}{where} ORDER BY {key} LIMIT ?")
        return self.source.run_sync("port_read", lambda t: t.select_all(sql, [*(last_key or []), self.batch_size]))

    def _write_batch_txn(self, txn, plan: TablePlan, values: list, first: bool, last_key, copied: int,
                         done: bool) -> None:
        if first:  # rows a migration seeded: the source has them too, as they are now
            txn.execute(f"DELETE FROM {plan.name}")
        txn.copy_rows(plan.name, plan.columns, values)
        txn.execute(f"DELETE FROM {PROGRESS_TABLE} WHERE table_name = ?", (plan.name,))
        txn.execute(f"INSERT INTO {PROGRESS_TABLE} (table_name, last_key, copied, done) VALUES (?, ?, ?, ?)",
                    (plan.name, None if last_key is None else json.dumps(last_key), copied, int(done)))

    def _clean(self, row) -> tuple:
        """PostgreSQL text cannot hold NUL characters: drop them (and count them for the report)."""
        out = []
        for value in row:
            if isinstance(value, str) and "\x00" in value:
                self.nul_stripped += 1
                value = value.replace("\x00", "")
            out.append(value)
        return tuple(out)

    # -- checking ----------------------------------------------------------------------
    def verify(self, out=sys.stdout) -> bool:
        """Print source and target row counts per table; True when every table matches."""
        width = max(len(t) for t in self.tables)
        print(f"{'table':<{width}}  {'sqlite':>10}  {'postgresql':>10}", file=out)
        all_match = True
        for table in self.tables:
            count_sql = f"SELECT COUNT(*) FROM {table}"
            source = self.source.run_sync("verify_count", lambda t: t.select_value(count_sql))
            target = self.target.run_sync("verify_count", lambda t: t.select_value(count_sql))
            status = "ok" if source == target else "MISMATCH"
            all_match &= source == target
            print(f"{table:<{width}}  {source:>10}  {target:>10}  {status}", file=out)
        return all_match

    def finish(self) -> None:
        self.target.run_sync("port_finish", lambda t: t.execute(f"DROP TABLE {PROGRESS_TABLE}"))


class ProgressBar:
    """A one-line progress bar on a terminal; a line every 10% otherwise. Only for long tables."""

    WIDTH = 30

    def __init__(self, stream, table: str, total: int, long: bool):
        self.stream, self.table, self.total, self.long = stream, table, max(total, 1), long
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last_tenth = -1
        self._started = time.monotonic()

    def show(self, copied: int) -> None:
        if not self.long:
            return
        fraction = min(copied / self.total, 1.0)
        if self.tty:
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            print(f"\r{self.table:<28} [{bar}] {copied}/{self.total}", end="", file=self.stream, flush=True)
        elif int(fraction * 10) != self._last_tenth:
            self._last_tenth = int(fraction * 10)
            print(f"{self.table}: {copied}/{self.total} rows ({fraction:.0%})", file=self.stream, flush=True)

    def finish(self, copied: int) -> None:
        elapsed = time.monotonic() - self._started
        if self.long and self.tty:
            print(file=self.stream)
        print(f"{self.table}: {copied} rows copied ({elapsed:.1f}s)", file=self.stream, flush=True)
