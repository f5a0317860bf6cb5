"""Who must use 2FA and by when: the decision table, the deadline edge, and its invariants."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import (
    Decision,
    Enrolment,
    Facts,
    Outcome,
    Policy,
    SessionState,
    Subject,
    TenantFact,
    applicable,
    combine,
    decide,
    parse_policy,
)

SYDNEY = ZoneInfo("Australia/Sydney")


def sydney(year: int, month: int, day: int, *clock: int) -> datetime:
    hour, minute, second, micro = (*clock, 0, 0, 0, 0)[:4]
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=SYDNEY)


AU = Policy(
    id="au-ato-2fa",
    version=1,
    description="2FA for Australian organisations",
    enabled=True,
    compliance_profile="ato-dsp-osf",
    countries=frozenset({"AU"}),
    requires_xero_connection=True,
    roles=frozenset({"principal", "member"}),
    announce=sydney(2026, 11, 1),
    deadline=sydney(2026, 12, 31, 23, 59, 59, 999999),
    timezone="Australia/Sydney",
    primary_methods=frozenset({"totp", "sms"}),
    backup_methods=frozenset({"sms", "email"}),
    backup_required_for=frozenset({"principal"}),
    max_dismissals=None,
    code_lifetime=timedelta(minutes=10),
    step_lifetime=timedelta(minutes=10),
    remember_device=timedelta(hours=23),
    service_refresh_window=timedelta(hours=8),
    max_failed_attempts=5,
    lockout=timedelta(minutes=15),
)


def au(**changes: Any) -> Policy:
    return dataclasses.replace(AU, **changes)


CAPPED = au(max_dismissals=3)
MEMBERS_ONLY = au(id="members", roles=frozenset({"member"}))
ANYWHERE = au(id="anywhere", requires_xero_connection=False)
EARLY = au(id="early", deadline=sydney(2026, 12, 1), max_dismissals=2)
TOTP_ONLY = au(id="totp-only", primary_methods=frozenset({"totp"}))

BEFORE_ANNOUNCE = sydney(2026, 10, 31, 12)
MID = sydney(2026, 12, 1, 9)  # 30 days and 15 hours before the deadline
BETWEEN = sydney(2026, 12, 15)  # after EARLY's deadline, before AU's
AFTER = sydney(2027, 1, 2)

AU_ACTIVE = Facts(tenants=(TenantFact(tenant_id="t-au", country="AU", active=True),))
AU_LOWER = Facts(tenants=(TenantFact(tenant_id="t-au", country="au", active=True),))
AU_INACTIVE = Facts(tenants=(TenantFact(tenant_id="t-au", country="AU", active=False),))
NZ_ACTIVE = Facts(tenants=(TenantFact(tenant_id="t-nz", country="NZ", active=True),))
NZ_AND_AU = Facts(
    tenants=(
        TenantFact(tenant_id="t-nz", country="NZ", active=True),
        TenantFact(tenant_id="t-au", country="AU", active=True),
    )
)
NO_TENANTS = Facts(tenants=())

NOT_ENROLLED = Enrolment(enrolled=False, has_backup=False, methods=frozenset())
ENROLLED = Enrolment(enrolled=True, has_backup=True, methods=frozenset({"totp"}))
NO_BACKUP = Enrolment(enrolled=True, has_backup=False, methods=frozenset({"totp"}))
SMS_ONLY = Enrolment(enrolled=True, has_backup=True, methods=frozenset({"sms"}))

FRESH = SessionState(mfa_verified=False, dismissed=False, dismissals=0)
VERIFIED = SessionState(mfa_verified=True, dismissed=False, dismissals=0)
DISMISSED = SessionState(mfa_verified=False, dismissed=True, dismissals=1)
VERIFIED_DISMISSED = SessionState(mfa_verified=True, dismissed=True, dismissals=1)


def dismissed_before(times: int, *, now: bool = False) -> SessionState:
    return SessionState(mfa_verified=False, dismissed=now, dismissals=times)


class Row(NamedTuple):
    policies: tuple[Policy, ...]
    role: str
    enrolment: Enrolment
    facts: Facts
    session: SessionState
    now: datetime
    outcome: Outcome
    header: str
    reason: str  # a fragment the reason must contain
    days_left: int | None = None
    dismissals_left: int | None = None


P = "principal"
M = "member"
A, PR, V, E = Outcome.ALLOW, Outcome.PROMPT, Outcome.VERIFY, Outcome.ENROL
NR, GR, OK = "not-required", "grace", "verified"

ROWS = {
    "no policy": Row((), M, NOT_ENROLLED, AU_ACTIVE, FRESH, MID, A, NR, "No two-factor policy"),
    "disabled policy": Row(
        (au(enabled=False),), M, NOT_ENROLLED, AU_ACTIVE, FRESH, MID, A, NR, "No two-factor"
    ),
    "out-of-scope country": Row((AU,), M, NOT_ENROLLED, NZ_ACTIVE, FRESH, MID, A, NR, "No two"),
    "inactive AU connection only": Row(
        (AU,), M, NOT_ENROLLED, AU_INACTIVE, FRESH, MID, A, NR, "No two-factor policy"
    ),
    "no Xero connection at all": Row(
        (AU,), M, NOT_ENROLLED, NO_TENANTS, FRESH, MID, A, NR, "No two-factor policy"
    ),
    "before announce": Row(
        (AU,), M, NOT_ENROLLED, AU_ACTIVE, FRESH, BEFORE_ANNOUNCE, A, NR, "No two-factor policy"
    ),
    "prompt with days left": Row(
        (AU,), M, NOT_ENROLLED, AU_ACTIVE, FRESH, MID, PR, NR, "31 days left", days_left=31
    ),
    "one AU tenant among others is enough": Row(
        (AU,), M, NOT_ENROLLED, NZ_AND_AU, FRESH, MID, PR, NR, "set up two-factor", days_left=31
    ),
    "country codes from Xero are read in any case": Row(
        (AU,), M, NOT_ENROLLED, AU_LOWER, FRESH, MID, PR, NR, "set up two-factor", days_left=31
    ),
    "dismissed in this session lets through in grace": Row(
        (AU,), M, NOT_ENROLLED, AU_ACTIVE, DISMISSED, MID, A, GR, "Reminder dismissed", 31
    ),
    "under the dismissal cap prompts with dismissals left": Row(
        (CAPPED,), M, NOT_ENROLLED, AU_ACTIVE, dismissed_before(1), MID, PR, NR, "days left",
        days_left=31, dismissals_left=2,
    ),
    "dismissal cap reached blocks before the deadline": Row(
        (CAPPED,), M, NOT_ENROLLED, AU_ACTIVE, dismissed_before(3), MID, E, NR,
        "can be dismissed only 3 times", days_left=31, dismissals_left=0,
    ),
    "the last allowed dismissal still gives grace for its session": Row(
        (CAPPED,), M, NOT_ENROLLED, AU_ACTIVE, dismissed_before(3, now=True), MID, A, GR,
        "Reminder dismissed", days_left=31, dismissals_left=0,
    ),
    "a cap of zero blocks from the start": Row(
        (au(max_dismissals=0),), M, NOT_ENROLLED, AU_ACTIVE, FRESH, MID, E, NR,
        "cannot be dismissed", dismissals_left=0, days_left=31,
    ),
    "a dismissal under a cap of zero gives no grace": Row(
        (au(max_dismissals=0),), M, NOT_ENROLLED, AU_ACTIVE, DISMISSED, MID, E, NR,
        "cannot be dismissed", dismissals_left=0, days_left=31,
    ),
    "after the deadline": Row(
        (AU,), M, NOT_ENROLLED, AU_ACTIVE, FRESH, AFTER, E, NR, "has passed", dismissals_left=0
    ),
    "after the deadline a dismissal no longer helps": Row(
        (AU,), M, NOT_ENROLLED, AU_ACTIVE, DISMISSED, AFTER, E, NR, "has passed", None, 0
    ),
    "enrolled but unverified must verify": Row(
        (AU,), M, ENROLLED, AU_ACTIVE, FRESH, MID, V, NR, "confirm it"
    ),
    "enrolled users verify even where no policy applies": Row(
        (AU,), M, ENROLLED, NZ_ACTIVE, FRESH, MID, V, NR, "confirm it"
    ),
    "enrolled users verify with no policies at all": Row(
        (), P, ENROLLED, NO_TENANTS, FRESH, AFTER, V, NR, "confirm it"
    ),
    "verified and compliant": Row((AU,), P, ENROLLED, AU_ACTIVE, VERIFIED, AFTER, A, OK, "meets"),
    "verified where no policy applies": Row(
        (), M, ENROLLED, NO_TENANTS, VERIFIED, MID, A, OK, "confirmed in this session"
    ),
    "principal without backup is prompted before the deadline": Row(
        (AU,), P, NO_BACKUP, AU_ACTIVE, VERIFIED, MID, PR, OK, "add a backup method", 31
    ),
    "principal without backup is blocked after the deadline": Row(
        (AU,), P, NO_BACKUP, AU_ACTIVE, VERIFIED, AFTER, E, OK, "add a backup method", None, 0
    ),
    "principal without backup who dismissed stays verified": Row(
        (AU,), P, NO_BACKUP, AU_ACTIVE, VERIFIED_DISMISSED, MID, A, OK, "add a backup", 31
    ),
    "member without backup is fine": Row(
        (AU,), M, NO_BACKUP, AU_ACTIVE, VERIFIED, AFTER, A, OK, "meets policy au-ato-2fa"
    ),
    "role not in scope": Row(
        (MEMBERS_ONLY,), P, NOT_ENROLLED, AU_ACTIVE, FRESH, AFTER, A, NR, "No two-factor"
    ),
    "unknown role is never in scope": Row(
        (AU,), "owner", NOT_ENROLLED, AU_ACTIVE, FRESH, AFTER, A, NR, "No two-factor"
    ),
    "two policies: the earliest deadline wins": Row(
        (AU, EARLY), M, NOT_ENROLLED, AU_ACTIVE, FRESH, BETWEEN, E, NR,
        "policies au-ato-2fa, early", dismissals_left=0,
    ),
    "two policies: the smallest cap wins": Row(
        (CAPPED, au(id="early", max_dismissals=2)), M, NOT_ENROLLED, AU_ACTIVE,
        dismissed_before(2), MID, E, NR, "can be dismissed only 2 times", 31, 0,
    ),
    "no connection required: unconnected organisations are in scope": Row(
        (ANYWHERE,), M, NOT_ENROLLED, NO_TENANTS, FRESH, MID, PR, NR, "days left", 31
    ),
    "no connection required: a known other country is still out": Row(
        (ANYWHERE,), M, NOT_ENROLLED, NZ_ACTIVE, FRESH, MID, A, NR, "No two-factor"
    ),
    "an enrolled method the policy does not accept": Row(
        (TOTP_ONLY,), M, SMS_ONLY, AU_ACTIVE, VERIFIED, MID, PR, OK, "accepted two-factor", 31
    ),
    "policies with no method in common": Row(
        (TOTP_ONLY, au(id="sms-only", primary_methods=frozenset({"sms"}))), M, ENROLLED,
        AU_ACTIVE, VERIFIED, AFTER, E, OK, "share no accepted method", None, 0,
    ),
}  # fmt: skip


def subject(role: str) -> Subject:
    return Subject(user_id="u-1", org_id="o-1", role=role)


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_decision_table(row: Row) -> None:
    decision = decide(
        row.policies, subject(row.role), row.enrolment, row.facts, row.session, row.now
    )
    assert decision.outcome is row.outcome, decision.reason
    assert decision.mfa_header == row.header
    assert row.reason in decision.reason
    assert decision.reason.endswith(".")
    assert decision.days_left == row.days_left
    assert decision.dismissals_left == row.dismissals_left


def test_the_decision_names_the_policies_and_the_deadline_that_bind() -> None:
    decision = decide([AU, EARLY], subject(M), NOT_ENROLLED, AU_ACTIVE, FRESH, sydney(2026, 11, 20))
    assert decision.outcome is Outcome.PROMPT
    assert decision.policy_ids == ("au-ato-2fa", "early")
    assert decision.deadline == sydney(2026, 12, 1)
    assert decision.dismissals_left == 2
    assert decision.effective is not None
    assert decision.effective.timezone == "Australia/Sydney"
    assert decision.reason == (
        "By 00:00 on 1 December 2026, Australia/Sydney time (11 days left),"
        " policies au-ato-2fa, early require you to set up two-factor authentication"
        " (sms or totp)."
    )


def test_a_prompt_reason_gives_the_day_and_days_left() -> None:
    decision = decide([AU], subject(P), NOT_ENROLLED, AU_ACTIVE, FRESH, MID)
    assert decision.reason == (
        "By the end of 31 December 2026, Australia/Sydney time (31 days left), policy"
        " au-ato-2fa requires you to set up two-factor authentication (sms or totp)."
    )


# The deadline edge, read from a document as an admin writes it.

DEADLINE_DOC: dict[str, Any] = {
    "id": "au-ato-2fa",
    "version": 1,
    "enabled": True,
    "compliance_profile": "ato-dsp-osf",
    "scope": {"countries": ["AU"], "requires_xero_connection": True, "roles": ["member"]},
    "schedule": {
        "announce": "2026-11-01",
        "deadline": "2026-12-31",
        "timezone": "Australia/Sydney",
    },
    "methods": {"primary": ["totp"]},
    "windows": {
        "code_lifetime": "10m",
        "step_lifetime": "10m",
        "remember_device": "23h",
        "service_refresh_window": "8h",
    },
    "attempts": {"max_failed": 5, "lockout": "15m"},
}


@pytest.mark.parametrize(
    ("now", "outcome", "days_left"),
    [
        ("2026-10-31T23:59:59.999999+11:00", Outcome.ALLOW, None),
        ("2026-11-01T00:00:00+11:00", Outcome.PROMPT, 61),
        ("2026-12-31T00:00:00+11:00", Outcome.PROMPT, 1),
        ("2026-12-31T23:59:59+11:00", Outcome.PROMPT, 1),
        ("2026-12-31T23:59:59.999999+11:00", Outcome.PROMPT, 0),  # the deadline itself
        ("2027-01-01T00:00:00+11:00", Outcome.ENROL, None),
        ("2026-12-31T12:59:59+00:00", Outcome.PROMPT, 1),  # the same edge, told in UTC
        ("2026-12-31T13:00:00+00:00", Outcome.ENROL, None),
    ],
)
def test_a_plain_deadline_date_holds_until_the_end_of_that_day_in_sydney(
    now: str, outcome: Outcome, days_left: int | None
) -> None:
    policy = parse_policy(DEADLINE_DOC)
    at = datetime.fromisoformat(now)
    decision = decide([policy], subject(M), NOT_ENROLLED, AU_ACTIVE, FRESH, at)
    assert decision.outcome is outcome
    assert decision.days_left == days_left


def test_instants_compare_as_instants_in_the_repeated_hour() -> None:
    # 5 April 2026, Sydney: 02:00-03:00 happens twice; 02:45 the first time (+11:00) is before
    # a deadline of 02:30 the second time (+10:00), though its wall time is later.
    policy = au(deadline=datetime(2026, 4, 5, 2, 30, tzinfo=SYDNEY, fold=1),
                announce=sydney(2026, 3, 1))  # fmt: skip
    first_pass = datetime(2026, 4, 5, 2, 45, tzinfo=SYDNEY, fold=0)
    second_pass = datetime(2026, 4, 5, 2, 45, tzinfo=SYDNEY, fold=1)
    assert decide([policy], subject(M), NOT_ENROLLED, AU_ACTIVE, FRESH, first_pass).outcome is (
        Outcome.PROMPT
    )
    assert decide([policy], subject(M), NOT_ENROLLED, AU_ACTIVE, FRESH, second_pass).outcome is (
        Outcome.ENROL
    )


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide([AU], subject(M), NOT_ENROLLED, AU_ACTIVE, FRESH, datetime(2026, 12, 1))


def test_an_enrolment_without_methods_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one method"):
        Enrolment(enrolled=True, has_backup=False, methods=frozenset())


def test_negative_dismissals_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SessionState(mfa_verified=False, dismissed=False, dismissals=-1)


def test_applicable_keeps_the_given_order() -> None:
    found = applicable([EARLY, MEMBERS_ONLY, AU], subject(M), AU_ACTIVE, MID)
    assert [p.id for p in found] == ["early", "members", "au-ato-2fa"]


# combine: strictest wins.


def test_combine_takes_the_strictest_of_each_rule() -> None:
    loose = au(
        id="loose",
        announce=sydney(2026, 10, 1),
        deadline=sydney(2027, 6, 30),
        timezone="Australia/Perth",
        compliance_profile="none",
        primary_methods=frozenset({"totp", "sms"}),
        backup_methods=frozenset({"email"}),
        backup_required_for=frozenset({"member"}),
        max_dismissals=None,
        code_lifetime=timedelta(minutes=5),
        remember_device=timedelta(days=30),
        service_refresh_window=timedelta(hours=12),
        max_failed_attempts=10,
        lockout=timedelta(hours=1),
    )
    strict = au(
        id="strict",
        primary_methods=frozenset({"totp"}),
        max_dismissals=4,
        code_lifetime=timedelta(minutes=10),
        step_lifetime=timedelta(minutes=3),
        max_failed_attempts=3,
    )
    effective = combine([loose, strict])
    assert effective.policy_ids == ("loose", "strict")
    assert effective.compliance_profiles == frozenset({"none", "ato-dsp-osf"})
    assert effective.announce == sydney(2026, 10, 1)
    assert effective.deadline == strict.deadline
    assert effective.timezone == "Australia/Sydney"
    assert effective.primary_methods == frozenset({"totp"})
    assert effective.backup_methods == frozenset({"email"})
    assert effective.backup_required_for == frozenset({"principal", "member"})
    assert effective.max_dismissals == 4
    assert effective.code_lifetime == timedelta(minutes=5)
    assert effective.step_lifetime == timedelta(minutes=3)
    assert effective.remember_device == timedelta(hours=23)
    assert effective.service_refresh_window == timedelta(hours=8)
    assert effective.max_failed_attempts == 3
    assert effective.lockout == timedelta(hours=1)


def test_combine_of_no_cap_and_no_cap_is_no_cap() -> None:
    assert combine([AU, au(id="other")]).max_dismissals is None


def test_combine_needs_a_policy() -> None:
    with pytest.raises(ValueError, match="at least one policy"):
        combine([])


def test_strictness_orders_outcomes() -> None:
    order = sorted(Outcome, key=lambda o: o.strictness)
    assert order == [Outcome.ALLOW, Outcome.PROMPT, Outcome.VERIFY, Outcome.ENROL]


# Properties.

START = datetime(2026, 1, 1)
END = datetime(2028, 1, 1)
ZONES = st.sampled_from([UTC, SYDNEY, ZoneInfo("Australia/Perth"), ZoneInfo("Pacific/Auckland")])
instants = st.datetimes(min_value=START, max_value=END, timezones=ZONES)
small_sets = st.frozensets


def mostly(usual: Any, *others: Any) -> st.SearchStrategy[Any]:
    """``usual`` more often than the others, so that most examples fall in some policy's scope."""
    return st.sampled_from([usual, usual, usual, *others])


@st.composite
def policies_(draw: st.DrawFn, policy_id: str) -> Policy:
    first = draw(instants)
    span = draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
    second = (first.astimezone(UTC) + span).astimezone(first.tzinfo)  # instants, not wall time
    return au(
        id=policy_id,
        enabled=draw(mostly(True, False)),
        countries=draw(small_sets(mostly("AU", "NZ", "GB"), min_size=1)),
        requires_xero_connection=draw(st.booleans()),
        roles=draw(small_sets(st.sampled_from([P, M]), min_size=1)),
        announce=first,
        deadline=second,
        primary_methods=draw(small_sets(st.sampled_from(["totp", "sms"]), min_size=1)),
        backup_methods=draw(small_sets(st.sampled_from(["sms", "email"]))),
        backup_required_for=draw(small_sets(st.sampled_from([P, M]))),
        max_dismissals=draw(mostly(None, 0, 1, 2, 4)),
    )


policy_lists = st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=4).flatmap(
    lambda ids: st.tuples(*(policies_(i) for i in ids)).map(list)
)
subjects = st.builds(Subject, user_id=st.just("u"), org_id=st.just("o"), role=mostly(M, P, "owner"))
enrolments = st.one_of(
    st.just(NOT_ENROLLED),
    st.builds(
        Enrolment,
        enrolled=st.booleans(),
        has_backup=st.booleans(),
        methods=small_sets(st.sampled_from(["totp", "sms", "email"]), min_size=1),
    ),
)
facts = st.builds(
    Facts,
    tenants=st.lists(
        st.builds(
            TenantFact,
            tenant_id=st.sampled_from(["t1", "t2"]),
            country=mostly("AU", "NZ", "US", "au"),
            active=mostly(True, False),
        ),
        max_size=3,
    ).map(tuple),
)
sessions = st.builds(
    SessionState,
    mfa_verified=st.booleans(),
    dismissed=st.booleans(),
    dismissals=mostly(0, 1, 2, 3, 5),
)


def judge(
    policies: list[Policy], who: Subject, enrolment: Enrolment, fact: Facts, session: SessionState
) -> Any:
    return lambda now: decide(policies, who, enrolment, fact, session, now)


@settings(max_examples=400)
@given(policy_lists, subjects, enrolments, facts, sessions, instants, instants)
def test_moving_now_later_never_loosens_a_decision(
    policies: list[Policy],
    who: Subject,
    enrolment: Enrolment,
    fact: Facts,
    session: SessionState,
    one: datetime,
    other: datetime,
) -> None:
    earlier, later = sorted([one, other], key=lambda d: d.astimezone(UTC))
    at = judge(policies, who, enrolment, fact, session)
    before: Decision = at(earlier)
    after: Decision = at(later)
    assert before.outcome.strictness <= after.outcome.strictness
    if before.outcome is Outcome.ENROL and not enrolment.enrolled:
        assert after.outcome is Outcome.ENROL


@settings(max_examples=400)
@given(policy_lists, policies_("z"), subjects, enrolments, facts, sessions, instants)
def test_adding_a_policy_never_loosens_a_decision(
    policies: list[Policy],
    extra: Policy,
    who: Subject,
    enrolment: Enrolment,
    fact: Facts,
    session: SessionState,
    now: datetime,
) -> None:
    without = decide(policies, who, enrolment, fact, session, now)
    with_extra = decide([*policies, extra], who, enrolment, fact, session, now)
    assert without.outcome.strictness <= with_extra.outcome.strictness


@given(policy_lists, subjects, enrolments, facts, sessions, instants)
def test_with_every_policy_disabled_only_enrolled_users_are_asked_anything(
    policies: list[Policy],
    who: Subject,
    enrolment: Enrolment,
    fact: Facts,
    session: SessionState,
    now: datetime,
) -> None:
    disabled = [dataclasses.replace(p, enabled=False) for p in policies]
    decision = decide(disabled, who, enrolment, fact, session, now)
    must_verify = enrolment.enrolled and not session.mfa_verified
    assert decision.outcome is (Outcome.VERIFY if must_verify else Outcome.ALLOW)
    assert decision.mfa_header == ("verified" if session.mfa_verified else "not-required")
    assert decision.policy_ids == ()


@given(policy_lists, subjects, enrolments, facts, sessions, instants, st.randoms())
def test_decide_is_deterministic_and_ignores_policy_order(
    policies: list[Policy],
    who: Subject,
    enrolment: Enrolment,
    fact: Facts,
    session: SessionState,
    now: datetime,
    random: Any,
) -> None:
    shuffled = list(policies)
    random.shuffle(shuffled)
    first = decide(policies, who, enrolment, fact, session, now)
    assert decide(policies, who, enrolment, fact, session, now) == first
    assert decide(shuffled, who, enrolment, fact, session, now) == first
    assert decide(policies, who, enrolment, fact, session, now.astimezone(UTC)) == first


@given(policy_lists.filter(bool), st.randoms())
def test_combine_is_commutative(policies: list[Policy], random: Any) -> None:
    shuffled = list(policies)
    random.shuffle(shuffled)
    assert combine(shuffled) == combine(policies)


@given(policy_lists, subjects, enrolments, facts, sessions, instants)
def test_the_header_matches_the_outcome(
    policies: list[Policy],
    who: Subject,
    enrolment: Enrolment,
    fact: Facts,
    session: SessionState,
    now: datetime,
) -> None:
    decision = decide(policies, who, enrolment, fact, session, now)
    if session.mfa_verified:
        assert decision.mfa_header == "verified"
    elif decision.mfa_header == "grace":
        assert decision.outcome is Outcome.ALLOW
        assert session.dismissed
        assert decision.policy_ids
    if decision.outcome is Outcome.PROMPT:
        assert decision.days_left is not None
        assert decision.days_left >= 0
        assert decision.deadline is not None
