"""Prometheus metrics, one registry per bot (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.mentions = Counter("seva_mentions_total", "Mentions read from X", registry=r)
        self.tickets = Counter("seva_tickets_total", "Tickets opened", ["department"], registry=r)
        self.followups = Counter("seva_followups_total", "Follow-up mentions", registry=r)
        self.chat_posts = Counter(
            "seva_chat_posts_total", "Bot messages posted to chat", ["platform"], registry=r
        )
        self.tweets = Counter("seva_reply_tweets_total", "Reply tweets posted", registry=r)
        self.refusals = Counter("seva_reply_refusals_total", "Replies X refused", registry=r)
        self.escalations = Counter("seva_escalations_total", "Tickets escalated", registry=r)
        self.commands = Counter("seva_commands_total", "Commands run", ["command"], registry=r)
        self.poll_errors = Counter("seva_poll_errors_total", "Failed polls", ["kind"], registry=r)
        self.poll_lag = Gauge(
            "seva_poll_lag_seconds", "Seconds since the last successful poll", registry=r
        )
        self.reply_latency = Histogram(
            "seva_reply_latency_seconds",
            "From an agent's thread reply to X accepting the tweet",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.open_tickets = Gauge("seva_open_tickets", "Open tickets", registry=r)
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
