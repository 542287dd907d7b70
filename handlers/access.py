"""Where a person stands in a department's channel, from the event or the platform: the
facts `bot.permissions` decides on.

An event in the department's own channel proves its sender is a member there (Slack and
Matrix let only members post; on Matrix it also carries their power level). Anything
else (a command typed in another channel or a DM, a button press) asks the platform,
which answers from a short cache; when it cannot say, the person is not a member.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from bot.config import Department
from bot.domain import ChannelId, ChatUserId, Platform
from bot.permissions import needs_lookup
from bot.ports import CommandContext, Standing
from handlers.context import Bridge

log = logging.getLogger("seva." + __name__)


async def standing(
    b: Bridge,
    dept: Department,
    user: ChatUserId,
    *,
    platform: Platform,
    posted_in: ChannelId | None,
    power_level: int | None = None,
    external: bool = False,
) -> Standing:
    """`user`'s standing in `dept`'s channel. `posted_in`: the channel the event happened
    in, when posting there proves membership (a message or a command; not a button)."""
    if external:
        return Standing(member=False, external=True)
    if platform != dept.platform:
        return Standing(member=False)  # a Slack user is never in a Matrix room
    if posted_in is not None and posted_in == dept.channel:
        return Standing(member=True, power_level=power_level)
    if not needs_lookup(dept, user, b.config):
        return Standing(member=False)
    chat = b.platform(dept.platform)
    if chat is None:
        return Standing(member=False)
    try:
        return await chat.standing(ChannelId(dept.channel), user)
    except Exception as e:  # fails closed: a lookup that failed proves nothing
        log.warning(
            "access.lookup_failed channel=%s user=%s error=%s",
            dept.channel,
            user,
            type(e).__name__,
        )
        return Standing(member=False)


async def command_standings(b: Bridge, ctx: CommandContext) -> Mapping[str, Standing]:
    """The asker's standing in every department, for a command that changes something
    (it learns which department only as it runs)."""
    depts = b.config.departments
    found = await asyncio.gather(
        *(
            standing(
                b,
                d,
                ctx.user,
                platform=ctx.platform,
                posted_in=ctx.channel,
                power_level=ctx.power_level,
                external=ctx.external,
            )
            for d in depts
        )
    )
    return {d.id: s for d, s in zip(depts, found, strict=True)}
