"""Benchmark: looking up earlier answered tickets like a new one, at 100,000 tickets.

    .venv/bin/python bench/similar.py [--tickets 100000] [--lookups 500] [--database URL]

Fills a fresh database (SQLite by default, or the PostgreSQL at URL, which must be an
empty database) with synthetic help-desk mentions in English, Hindi, romanised Hindi,
Tamil and Bengali: a few hundred question shapes whose train numbers, stations, towns
and hospitals are drawn with a heavy head (some trains get thousands of questions, as in
a strike), plus words of the citizen's own. Four in five are answered. Then it prints:
- lookup: `handlers.similar.find_similar` for new mentions of the same kinds, one unit of
  work each as ingest runs it (terms, counts, search, scoring), p50/p95/p99/max in ms;
- ingest: opening 100 new tickets in one transaction, with and without their lookups
  (`index_and_suggest` against `index_tickets` alone), ms per ticket.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapters.db.store import Store  # noqa: E402
from bot.domain import ChannelId, ChatUserId, DepartmentId, Tweet, TweetId, XUserId  # noqa: E402
from bot.ports import NewTicket  # noqa: E402
from bot.similarity import terms  # noqa: E402
from entrypoints import migrate  # noqa: E402
from handlers.similar import find_similar, index_and_suggest  # noqa: E402

SHAPES = [
    "is train {train} cancelled today? no announcement at {station}",
    "{train} running late by how many hours? stuck at {station}",
    "why is {train} so late, when will it reach {station}",
    "refund for cancelled train {train} not received, booked on IRCTC",
    "platform number of {train} at {station}?",
    "food in {train} pantry is stale, coach B{n}",
    "AC not working in coach B{n} of {train}",
    "PNR {pnr} waitlisted, chances of confirmation on {train}?",
    "where to get oxygen cylinder refill in {city}?",
    "ICU bed with oxygen available at {hospital} {city}?",
    "vaccine slot booking on CoWIN not working for {city}",
    "CoWIN OTP not received, tried {n} times",
    "ambulance not reached {city} after {n} hours, emergency",
    "power cut in {city} since {n} hours, when will electricity return",
    "electricity bill too high this month in {city}, how to complain",
    "LPG cylinder booked {n} days ago not delivered in {city}",
    "passport appointment slots not available at PSK {city}",
    "passport police verification pending in {city}",
    "{train} ट्रेन रद्द है क्या? {station} पर कोई जानकारी नहीं",
    "{train} कितनी लेट है, {station} कब पहुंचेगी",
    "रद्द ट्रेन {train} का रिफंड कब मिलेगा",
    "{city} में ऑक्सीजन सिलेंडर कहाँ मिलेगा",
    "{hospital} {city} में बेड खाली है क्या",
    "{city} में बिजली {n} घंटे से नहीं है",
    "वैक्सीन सर्टिफिकेट डाउनलोड नहीं हो रहा {city}",
    "{train} kis platform pe aayegi {station}",
    "{train} kitni late hai bhai {station} pe",
    "{city} me oxygen cylinder kaha milega",
    "{train} இன்று ரத்து செய்யப்பட்டதா? {station}",
    "{city} ஆக்ஸிஜன் சிலிண்டர் எங்கே கிடைக்கும்",
    "{train} ট্রেন আজ কত দেরিতে চলছে {station}",
    "{city} টিকা কেন্দ্র কোথায়",
]

_LATIN = "ka ra ma na pa ta sa la va da ga ha ja ba ya ri ni mi si ti ku ru nu pu"
_DEVANAGARI = "क र म न प त स ल व द ग ह ज ब य री नी मी सी ती कु रु नु पु"
SYLLABLES_LATIN = _LATIN.split()
SYLLABLES_DEVA = _DEVANAGARI.split()


def _zipf_pool(rng: random.Random, items: list[str], s: float = 1.1) -> list[float]:
    return [1 / (i + 1) ** s for i in range(len(items))]


def _word(rng: random.Random, syllables: list[str]) -> str:
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))


class Mentions:
    """Synthetic mentions with heavy-headed slots and citizens' own words."""

    def __init__(self, seed: int = 7) -> None:
        rng = self.rng = random.Random(seed)
        self.pools = {
            "train": [str(rng.randint(10000, 22999)) for _ in range(3000)],
            "station": [_word(rng, SYLLABLES_LATIN).title() for _ in range(300)],
            "city": [_word(rng, SYLLABLES_LATIN).title() for _ in range(200)],
            "hospital": [_word(rng, SYLLABLES_LATIN).upper() for _ in range(200)],
            "own": [_word(rng, SYLLABLES_LATIN) for _ in range(3000)]
            + [_word(rng, SYLLABLES_DEVA) for _ in range(3000)],
        }
        self.weights = {k: _zipf_pool(rng, v) for k, v in self.pools.items()}

    def pick(self, pool: str) -> str:
        return self.rng.choices(self.pools[pool], self.weights[pool])[0]

    def text(self) -> str:
        rng = self.rng
        shape = rng.choice(SHAPES)
        text = shape.format(
            train=self.pick("train"),
            station=self.pick("station"),
            city=self.pick("city"),
            hospital=self.pick("hospital"),
            n=rng.randint(2, 12),
            pnr=rng.randint(10**9, 10**10 - 1),
        )
        own = " ".join(self.pick("own") for _ in range(rng.randint(0, 4)))
        return f"@SevaHelp {text} {own}".strip()


def fill(store: Store, mentions: Mentions, n: int, batch: int = 2000) -> None:
    made = 0
    tweet_id = 10**15
    started = time.perf_counter()
    while made < n:
        k = min(batch, n - made)
        news = []
        for _ in range(k):
            tweet_id += 1
            news.append(
                NewTicket(
                    Tweet(TweetId(str(tweet_id)), mentions.text(), XUserId("2000"), "citizen"),
                    DepartmentId("transport"),
                    "slack",
                    ChannelId("C0TRANSPORT"),
                    ChatUserId("U0TRANSPORT"),
                )
            )
        with store.tx() as tx:
            opened = tx.create_tickets(news)
            tx.index_tickets([(t.number, terms(t.text)) for t in opened])
            for t in opened:
                if mentions.rng.random() < 0.8:
                    tx.first_response(t.number)
        made += k
        print(f"\r  filled {made}/{n} ({time.perf_counter() - started:.0f} s)", end="", flush=True)
    print()


def _ms(seconds: list[float], q: float) -> float:
    return statistics.quantiles(seconds, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tickets", type=int, default=100_000)
    p.add_argument("--lookups", type=int, default=500)
    p.add_argument("--database", help="an empty PostgreSQL database (default: a fresh SQLite)")
    args = p.parse_args()
    url = args.database or f"sqlite:///{Path(tempfile.mkdtemp()) / 'similar.db'}"
    store = Store(url)
    migrate.upgrade(store.engine)
    mentions = Mentions()
    print(f"{store.engine.dialect.name}: filling {args.tickets} tickets")
    fill(store, mentions, args.tickets)

    queries = [terms(mentions.text()) for _ in range(args.lookups)]
    times: list[float] = []
    cpu: list[float] = []
    found = 0
    for query in queries:
        started, started_cpu = time.perf_counter(), time.process_time()
        with store.tx() as tx:
            found += bool(find_similar(tx, query, answered=True))
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    print(
        f"lookup at {args.tickets} tickets, {len(times)} lookups: "
        f"p50 {_ms(times, 50):.1f} ms, p95 {_ms(times, 95):.1f} ms, "
        f"p99 {_ms(times, 99):.1f} ms, max {max(times) * 1000:.1f} ms "
        f"({found} found a similar answered ticket)"
    )
    # On a busy machine the wall clock counts waiting for a core too; this process's own
    # CPU time does not (on SQLite that is the whole lookup; PostgreSQL's share is not in it).
    print(
        f"  this process's CPU time per lookup: p50 {_ms(cpu, 50):.1f} ms, "
        f"p95 {_ms(cpu, 95):.1f} ms"
    )

    for label, suggest in (("index only", False), ("index and suggest", True)):
        runs = []
        for _ in range(5):
            news = [
                NewTicket(
                    Tweet(
                        TweetId(str(10**17 + i + len(runs) * 1000 + suggest * 10**6)),
                        mentions.text(),
                        XUserId("2000"),
                        "citizen",
                    ),
                    DepartmentId("transport"),
                    "slack",
                    ChannelId("C0TRANSPORT"),
                    ChatUserId("U0TRANSPORT"),
                )
                for i in range(100)
            ]
            started = time.perf_counter()
            with store.tx() as tx:
                opened = tx.create_tickets(news)
                if suggest:
                    index_and_suggest(tx, opened)
                else:
                    tx.index_tickets([(t.number, terms(t.text)) for t in opened])
            runs.append(time.perf_counter() - started)
        print(
            f"ingest, 100 new tickets in one transaction ({label}): "
            f"{statistics.median(runs) * 1000 / 100:.2f} ms per ticket (median of 5)"
        )
    store.dispose()


if __name__ == "__main__":
    main()
