"""The database (SQLAlchemy 2, SQLite and PostgreSQL): tables.py the schema, uow.py one
unit of work (`Tx`) with its outbox claims, leases and replay guards in claims.py, and
store.py the `TicketStore` that runs units of work on its own threads."""
