"""Who may speak for a department in public, and who may change its tickets: one rule
for a reply in a ticket's thread, the Send button of a preview (Slack), a confirming
reaction (Matrix), the safety reply, and every command that changes something (SPEC
section 5). The facts come from the platform (`Standing`); the rule is here, once.
"""

from __future__ import annotations

from bot.config import Config, Department
from bot.domain import ChatUserId
from bot.ports import Standing


def may_answer(config: Config, dept: Department, user: ChatUserId, standing: Standing) -> bool:
    """The department's agents, else (no `agents` listed) the members of its channel or
    room, never anyone anywhere; where the platform has power levels (Matrix), only at
    or above `matrix.min_power_level` in the department's room. Nobody from another
    workspace (Slack Connect) ever speaks for a department."""
    if standing.external:
        return False
    if dept.agents:
        if user not in dept.agents:
            return False
    elif not standing.member:
        return False
    if standing.power_level is not None:
        return standing.power_level >= config.matrix.min_power_level
    return True


def may_change(config: Config, dept: Department, user: ChatUserId, standing: Standing) -> bool:
    """Who may change a department's tickets and saved answers: whoever may answer for it
    in public, and the `supervisors` on every department (but never someone from another
    workspace)."""
    if standing.external:
        return False
    return user in config.supervisors or may_answer(config, dept, user, standing)


def needs_lookup(dept: Department, user: ChatUserId, config: Config) -> bool:
    """Whether deciding for `user` needs their standing in the department's channel from
    the platform (when the event did not happen there): not for a supervisor, nor on a
    platform without power levels when the department lists its agents."""
    if user in config.supervisors:
        return False
    return dept.platform == "matrix" or not dept.agents
