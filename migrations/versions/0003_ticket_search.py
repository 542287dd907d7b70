"""ticket_search, answered_search, search_terms: which earlier tickets asked the same thing

Full-text indexes of each ticket's terms (`bot.similarity.terms`). SQLite: two FTS5
tables, every ticket and the answered ones, whose tokenizer keeps combining marks in
their word (unicode61's default would cut `ट्रेन` at each vowel sign and virama).
PostgreSQL: one table with a `tsvector` of the terms as they are and an `answered`
flag, GIN-indexed (the answered ones apart, as new roots look only at those). The
tickets already stored are indexed here, a thousand at a time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00.000000
"""

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.similarity import terms as ticket_terms

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Letters, numbers, private use and every combining mark are part of a word.
FTS5_TOKENIZER = "unicode61 categories 'L* N* Co M*' remove_diacritics 0"
BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "search_terms",
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("df", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("term"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(
            "CREATE TABLE ticket_search ("
            " ticket INTEGER PRIMARY KEY REFERENCES tickets (number),"
            " terms TEXT NOT NULL,"
            " lexemes TSVECTOR NOT NULL,"
            " answered BOOLEAN NOT NULL DEFAULT false)"
        )
        op.execute("CREATE INDEX ix_ticket_search_lexemes ON ticket_search USING gin (lexemes)")
        op.execute(
            "CREATE INDEX ix_ticket_search_answered ON ticket_search USING gin (lexemes) "
            "WHERE answered"
        )
    else:
        for table in ("ticket_search", "answered_search"):
            op.execute(
                f'CREATE VIRTUAL TABLE {table} USING fts5(terms, tokenize = "{FTS5_TOKENIZER}")'
            )
    _index_existing(postgres)


def _index_existing(postgres: bool) -> None:
    conn = op.get_bind()
    last = 0
    df: Counter[str] = Counter()
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT number, text, first_response_at IS NOT NULL FROM tickets "
                "WHERE number > :last ORDER BY number LIMIT :n"
            ),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        items = [(number, ticket_terms(text), bool(answered)) for number, text, answered in rows]
        for _, found, _ in items:
            df.update(set(found))
        if postgres:
            conn.execute(
                sa.text(
                    "INSERT INTO ticket_search (ticket, terms, lexemes, answered) VALUES "
                    "(:t, :terms, array_to_tsvector(CAST(:a AS text[])), :answered)"
                ),
                [{"t": n, "terms": " ".join(f), "a": list(f), "answered": a} for n, f, a in items],
            )
            continue
        conn.execute(
            sa.text("INSERT INTO ticket_search (rowid, terms) VALUES (:t, :terms)"),
            [{"t": n, "terms": " ".join(f)} for n, f, _ in items],
        )
        answered = [{"t": n, "terms": " ".join(f)} for n, f, a in items if a]
        if answered:
            conn.execute(
                sa.text("INSERT INTO answered_search (rowid, terms) VALUES (:t, :terms)"),
                answered,
            )
    if df:
        conn.execute(
            sa.text("INSERT INTO search_terms (term, df) VALUES (:term, :df)"),
            [{"term": t, "df": n} for t, n in sorted(df.items())],
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE ticket_search")
    else:
        op.execute("DROP TABLE answered_search")
        op.execute("DROP TABLE ticket_search")
    op.drop_table("search_terms")
