"""``hexagone port-db``: copy a stopped server's SQLite database into a new PostgreSQL database.

A command, not storage: it takes the list of storage domains from the composition root and drives the
copy in ``homeserver/storage/porting.py``.
"""

from __future__ import annotations

import os
import sys

from homeserver.server import STORAGE_DOMAINS
from homeserver.storage.database import Database, PostgresEngine, SqliteEngine
from homeserver.storage.porting import Porter, PortError, tables_from_migrations

__all__ = ["PortError", "database_yaml", "port_database"]


def port_database(config, target_url: str, batch_size: int, out=sys.stdout, err=sys.stderr) -> int:
    """``hexagone port-db``: returns the process exit status."""
    if config.database.engine != "sqlite":
        raise PortError(f"port-db copies a SQLite database, but this configuration uses {config.database.engine}.")
    if not os.path.isfile(config.database.sqlite_path):
        raise PortError(f"No SQLite database at {config.database.sqlite_path}.")
    source = Database(SqliteEngine(config.database.sqlite_path), None)
    try:
        target = Database(PostgresEngine(target_url, 1, 1), None)
    except BaseException:
        source.close()
        raise
    try:
        porter = Porter(source, target, tables_from_migrations(STORAGE_DOMAINS), batch_size, err)
        porter.check_source(STORAGE_DOMAINS)
        if porter.prepare_target(STORAGE_DOMAINS):
            print("Resuming an interrupted port.", file=err)
        for table in porter.tables:
            porter.copy_table(porter.plan(table))
        if porter.nul_stripped:
            print(f"warning: removed NUL characters from {porter.nul_stripped} values "
                  "(PostgreSQL text cannot hold them)", file=err)
        if not porter.verify(out):
            print("Row counts differ: the port is incomplete. Was the server running during the port?", file=err)
            return 1
        porter.finish()
    finally:
        source.close()
        target.close()
    print(f"\nPort complete. Now set `database` in {config.config_path} to the new database, then start "
          f"the server:\n\n{database_yaml(target_url, config.config_dir)}", file=out)
    return 0


def database_yaml(url: str, config_dir: str) -> str:
    """The ``database`` section for ``url``, its password left out (give password or password_file)."""
    import yaml

    from homeserver.config_sample import database_from_url

    name, args = database_from_url(url, config_dir)
    if args.pop("password", None) is not None:
        args["password"] = "..."
    return yaml.safe_dump({"database": {"name": name, "args": args}}, sort_keys=False)
