"""Persistence: the tables, engines and sessions, schema migrations, leases and SQL helpers."""
