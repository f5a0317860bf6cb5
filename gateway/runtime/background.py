"""The gateway's background work, shared by every listener: writing session last-use times
behind, housekeeping, following what other processes changed, forwarding Xero's webhook
events to the app, reading connected Xero tenants again on a schedule, and sending reminders
before 2FA deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.accounts.password_resets import RESET_KEEP_SECONDS
from gateway.errors import StoreError
from gateway.reminders.service import Reminders
from gateway.services import Services
from gateway.web.password_flows import CHANGE_THROTTLE_PREFIX, RESET_THROTTLE_PREFIX, RESET_WINDOW
from gateway.xero.recheck import Rechecked, recheck_all

SESSION_FLUSH_SECONDS = 15.0
# How soon a change made by another process (the CLI, another replica) takes effect.
REFRESH_SECONDS = 2.0
HOUSEKEEPING_SECONDS = 3600.0
# Ended sessions stay a week for investigations; the audit trail keeps the sign-ins for good.
ENDED_SESSION_KEEP_SECONDS = 7 * 24 * 3600.0
# Spent and expired codes, and enrolments under way that ran out, stay a day, so a late try is
# told "expired" (and the step starts over, saying why) rather than "no code" or "not started".
CODE_KEEP_SECONDS = 24 * 3600.0
# Xero connect-flow states likewise, so a late callback is told "expired" or "used".
STATE_KEEP_SECONDS = 24 * 3600.0
# Webhook events delivered or abandoned stay a week, for investigations (abandoned ones are
# in the audit trail for good).
WEBHOOK_KEEP_SECONDS = 7 * 24 * 3600.0
# Reminder claims outlive any use: a point is at most 365 days before its deadline, after
# which nothing is sent, and a week's summary is over in a week.
REMINDER_CLAIM_KEEP_SECONDS = 400 * 24 * 3600.0
# A user's recent sign-ins (their newest 20 at most) are shown for 90 days.
SIGN_IN_KEEP_SECONDS = 90 * 24 * 3600.0

log = logging.getLogger(__name__)


class BackgroundTasks:
    """The session flusher, housekeeping, the follower of other processes and the webhook
    forwarder (when configured), as one unit: started before the listeners, stopped after them
    (the flusher writes once more on the way out)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Run the first round of housekeeping, then start the tasks. The first round is done
        before the gateway serves, so start-up purges never overlap the first requests."""
        if self._tasks:
            return
        services = self._services
        await housekeep_safely(services)
        self._tasks = [
            asyncio.create_task(services.sessions.run_flusher(SESSION_FLUSH_SECONDS)),
            asyncio.create_task(_housekeeping(services)),
            asyncio.create_task(_follow_other_processes(services)),
        ]
        self._tasks.append(asyncio.create_task(_recheck_xero(services)))
        self._tasks.append(asyncio.create_task(_remind(services)))
        if services.xero_webhooks is not None:
            self._tasks.append(asyncio.create_task(services.xero_webhooks.run()))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def follow_other_processes(services: Services) -> None:
    """One tick of following: pick up what the CLI or another replica changed (policies,
    tenants, ended sessions, sessions' second-factor checks and dismissals). One statement
    while nothing changed; the reloads only when needed."""
    book, sessions = services.decider.book, services.sessions
    marks = await services.store.change_marks()
    if marks.policies != book.set_version or marks.facts != book.facts_version:
        await book.refresh()
    if marks.revocations != sessions.revocations_seen:
        await sessions.follow_revocations()
    if marks.user_changes != sessions.changes_seen:
        services.decider.forget_users(await sessions.follow_changes())


async def _follow_other_processes(services: Services) -> None:
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            await follow_other_processes(services)
        except StoreError:
            log.exception("could not refresh from the store; keeping what is in force")


async def housekeep(services: Services) -> None:
    """One round of housekeeping: forget what no longer matters."""
    purged = await services.sessions.purge(ENDED_SESSION_KEEP_SECONDS)
    now = services.clock()
    codes = await services.store.codes.purge(before=now - CODE_KEEP_SECONDS)
    steps = await services.store.factors.purge_enrolments(before=now - CODE_KEEP_SECONDS)
    # Sign-in counts go once the sign-in window is over; send counts once their window (kept
    # as the counter's end) has passed. Second-factor counts ("mfa:") are never purged here:
    # they count consecutive failures however far apart, and a success clears them.
    counters = await services.store.throttle.purge(
        prefix="login:", now=now, window=services.account_throttle.window
    )
    counters += await services.store.throttle.purge(prefix="send:", now=now, window=0.0)
    counters += await services.store.throttle.purge(
        prefix=RESET_THROTTLE_PREFIX, now=now, window=RESET_WINDOW
    )
    counters += await services.store.throttle.purge(
        prefix=CHANGE_THROTTLE_PREFIX, now=now, window=services.account_throttle.window
    )
    # Reset links, spent or not, stay a day past their end, so a late click is told why.
    links = await services.store.passwords.purge(before=now - RESET_KEEP_SECONDS)
    counters += await services.store.throttle.purge(
        prefix="admin-login:", now=now, window=services.account_throttle.window
    )
    purged += await services.store.admins.purge_sessions(now, ENDED_SESSION_KEEP_SECONDS)
    await services.store.revocations.purge(now - services.sessions.limits.absolute)
    await services.store.changes.purge(now - services.sessions.limits.absolute)
    devices = await services.store.factors.purge_devices(now)
    await services.xero_authorizations.purge(before=now - STATE_KEEP_SECONDS)
    await services.store.xero_webhooks.purge(before=now - WEBHOOK_KEEP_SECONDS)
    # Claims are stamped by the time policies are decided at (the demo's --at moves it).
    claims_before = services.policy_clock() - REMINDER_CLAIM_KEEP_SECONDS
    await services.store.reminders.purge(before=claims_before)
    sign_ins = await services.store.sign_ins.purge(before=now - SIGN_IN_KEEP_SECONDS)
    if purged or counters or devices or codes or steps or links or sign_ins:
        log.info(
            "housekeeping",
            extra={
                "sessions": purged,
                "throttles": counters,
                "devices": devices,
                "codes": codes,
                "enrolments": steps,
                "reset_links": links,
                "sign_ins": sign_ins,
            },
        )


async def housekeep_safely(services: Services) -> None:
    """One round of housekeeping; a failing store is logged, and tried again next round."""
    try:
        await housekeep(services)
    except StoreError:
        log.exception("housekeeping failed; will retry")


async def _housekeeping(services: Services) -> None:
    while True:  # the first round ran at start
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
        await housekeep_safely(services)


async def recheck_xero(services: Services) -> Rechecked:
    """One round of the Xero facts schedule: every active connection's tenants and their
    Organisation read again with the stored access token (never refreshed); the policy book
    is refreshed when a tenant changed."""
    found = await recheck_all(
        services.store, services.xero_vault, services.xero_tenants, now=services.clock()
    )
    if found.changed:
        await services.decider.book.refresh()
        log.info(
            "xero tenants rechecked",
            extra={"removed": len(found.removed), "linked": len(found.linked)},
        )
    return found


async def _recheck_xero(services: Services) -> None:
    interval = services.config.xero.recheck_minutes * 60
    while True:
        await asyncio.sleep(interval)
        try:
            await recheck_xero(services)
        except StoreError:
            log.exception("the Xero facts schedule could not write; will retry")


async def _remind(services: Services) -> None:
    rounds = Reminders(
        store=services.store,
        email=services.sending.email,
        clock=services.policy_clock,
        in_force=services.decider.book.in_force,
        # Links in the emails start at the gateway's public address, when one is configured.
        base_url=services.config.server.public_url.rstrip("/"),
    )
    await rounds.run_forever()
