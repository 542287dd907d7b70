"""`rare(condition)`: a condition few rows meet, such as a post still in flight among a
year's delivered ones, said so to the query planner.

SQLite's planner reads `sqlite_stat1` (written by `ANALYZE` or `PRAGMA optimize`),
which keeps one average per index column: with a million delivered posts and a handful
pending, `state IN ('pending', 'unknown')` looks like a third of the table, and it
scans the table (100-300 ms at a million rows) instead of searching the index
(under 1 ms). `likelihood(X, 0.000001)` (sqlite.org/lang_corefunc.html#likelihood)
tells it that X is seldom true, and the planner still uses X's index (it looks
through the function). `unlikely(X)` says 1 in 16, which a query ordered by id with a
LIMIT still outweighs by scanning.
PostgreSQL keeps the most common values of each column, so it knows a rare state is
rare: there the condition is written as it is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class rare(FunctionElement[bool]):  # lower case: it reads as a condition, like and_
    # No Boolean type on purpose: SQLite would then be sent `likelihood(…) = 1`, which
    # its planner cannot search an index for.
    inherit_cache = True


@compiles(rare)
def _as_written(element: rare, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(rare, "sqlite")
def _likelihood(element: rare, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, 0.000001)"
