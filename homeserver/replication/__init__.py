"""Several processes over one database: Redis pub/sub between them (docs/workers.md)."""
