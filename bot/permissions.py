"""Who may speak for a department in public: one rule for a reply in a ticket's thread,
the Send button of a preview (Slack) and a confirming reaction (Matrix)."""

from __future__ import annotations

from bot.config import Config, Department
from bot.domain import ChatUserId


def may_answer(config: Config, dept: Department, user: ChatUserId, power_level: int | None) -> bool:
    """The department's agents, else any member; where the platform has power levels
    (Matrix, `power_level` set), only members at or above `matrix.min_power_level`."""
    if dept.agents and user not in dept.agents:
        return False
    if power_level is not None:
        return power_level >= config.matrix.min_power_level
    return True


def may_change(config: Config, dept: Department, user: ChatUserId, power_level: int | None) -> bool:
    """Who may change a department's tickets and saved answers (SPEC section 5): whoever
    may answer for it in public, and the `supervisors` on every department."""
    return user in config.supervisors or may_answer(config, dept, user, power_level)
