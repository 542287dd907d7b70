"""The database (SQLAlchemy 2, SQLite and PostgreSQL): tables.py the schema, uow.py one
unit of work (`Tx`), store.py the `TicketStore` with its claims and leases."""
