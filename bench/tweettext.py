"""Benchmark: splitting a long reply into a chain, on ordinary and adversarial text.

    .venv/bin/python bench/tweettext.py

twitter_text's URL pattern reads runs of dotted labels ("x.x.x…") in quadratic time;
bot/tweettext.py weighs such runs by a bound instead. Prints the slowest of a few
splits per shape (the work a reply costs before it is queued).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import tweettext

SHAPES = {
    "prose with links, 3,800 chars": (
        "Please call the helpline 1075. Visit https://www.mohfw.gov.in/ for details. " * 50
    ),
    "Hindi, 3,600 chars": "कृपया 1075 पर कॉल करें। " * 150,
    "emoji, 3,500 chars": "👍🏽 ok. " * 500,
    "x.x.x… 3,000 chars": "x." * 1500,
    "x/x.x.x… 3,000 chars": "x/" + "x." * 1500,
    "https://x.x.x… 3,000 chars": "https://" + "x." * 1500,
    "40,000 chars (Slack's longest message)": ("a.b/" * 100 + " ") * 100,
}


def main() -> None:
    for name, text in SHAPES.items():
        worst = 0.0
        for _ in range(3):
            tweettext._split.cache_clear()
            tweettext._run_weight.cache_clear()
            t = time.perf_counter()
            parts = tweettext.split_reply(text)
            worst = max(worst, time.perf_counter() - t)
        print(f"split_reply {name}: {len(parts)} parts, slowest {worst * 1000:.1f} ms")


if __name__ == "__main__":
    main()
