"""Prometheus metrics (`bot.ports.Metrics`), one registry per bot (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.ports import Count


class PrometheusMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._counters: dict[Count, Counter] = {
            Count.MENTIONS: Counter("seva_mentions_total", "Mentions read from X", registry=r),
            Count.TICKETS: Counter(
                "seva_tickets_total", "Tickets opened", ["department"], registry=r
            ),
            Count.FOLLOWUPS: Counter("seva_followups_total", "Follow-up mentions", registry=r),
            Count.CHAT_POSTS: Counter(
                "seva_chat_posts_total", "Bot messages posted to chat", ["platform"], registry=r
            ),
            Count.REPLY_TWEETS: Counter(
                "seva_reply_tweets_total", "Reply tweets posted", registry=r
            ),
            Count.REFUSALS: Counter("seva_reply_refusals_total", "Replies X refused", registry=r),
            Count.ESCALATIONS: Counter("seva_escalations_total", "Tickets escalated", registry=r),
            Count.COMMANDS: Counter("seva_commands_total", "Commands run", ["command"], registry=r),
            Count.CHAT_REFUSALS: Counter(
                "seva_chat_refusals_total",
                "Bot messages the chat platform refused for good (named in /healthz)",
                ["platform"],
                registry=r,
            ),
            Count.POLL_ERRORS: Counter(
                "seva_poll_errors_total", "Failed polls", ["kind"], registry=r
            ),
            Count.IGNORED_MENTIONS: Counter(
                "seva_ignored_mentions_total",
                "Mentions from triage.ignore accounts, which make no ticket",
                registry=r,
            ),
            Count.URGENT_TICKETS: Counter(
                "seva_urgent_tickets_total",
                "Tickets marked urgent (triage.urgent), when opened or by a follow-up",
                ["department"],
                registry=r,
            ),
        }
        self.poll_lag = Gauge(
            "seva_poll_lag_seconds", "Seconds since the last successful poll", registry=r
        )
        self._reply_latency = Histogram(
            "seva_reply_latency_seconds",
            "From an agent's thread reply to X accepting the tweet",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self._first_response = Histogram(
            "seva_first_response_seconds",
            "From a citizen's question to the ticket's first public reply",
            ["department"],
            buckets=(60, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400),
            registry=r,
        )
        self.open_tickets = Gauge("seva_open_tickets", "Open tickets", ["department"], registry=r)
        self.outbox_pending = Gauge(
            "seva_outbox_pending", "Chat posts not yet delivered", registry=r
        )
        self.outbox_failed = Gauge(
            "seva_outbox_failed", "Chat posts the platform refused for good", registry=r
        )
        self.replies_pending = Gauge(
            "seva_replies_pending",
            "Agent replies not yet tweeted (incl. awaiting Send)",
            registry=r,
        )

    # --- the port

    def count(self, what: Count, amount: float = 1, *, label: str | None = None) -> None:
        counter = self._counters[what]
        (counter.labels(label) if label is not None else counter).inc(amount)

    def reply_latency(self, seconds: float) -> None:
        self._reply_latency.observe(seconds)

    def first_response(self, department: str, seconds: float) -> None:
        self._first_response.labels(department).observe(seconds)

    # --- for the composition root's /metrics

    def render(self) -> bytes:
        return generate_latest(self.registry)
