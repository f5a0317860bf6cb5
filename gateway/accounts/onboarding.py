"""Bringing an existing user base in: a CSV file checked whole, then added all at once."""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass

from gateway.accounts.emails import email_problem, normalise_email
from gateway.accounts.passwords import Passwords, password_problem
from gateway.audit import Event, OrgAdded, UserAdded, UsersImported
from gateway.errors import ImportRowError
from gateway.store import Store
from gateway.store.records import NewUser, User, new_id

REQUIRED = ("org", "email", "name", "role")
ROLES = ("principal", "member")


@dataclass(frozen=True, kw_only=True)
class ImportResult:
    users: list[User]
    generated: list[tuple[str, str]]  # (email, password) for rows that had none


async def import_users(
    store: Store, text: str, *, passwords: Passwords, now: float, create_orgs: bool
) -> ImportResult:
    """Add every row or none; raise ImportRowError listing every bad row by line number."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportRowError(f"line 1: missing column(s) {', '.join(missing)}")
    reader.fieldnames = header
    problems: list[str] = []
    rows: list[tuple[str, str, str, str, str | None]] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        org = (row.get("org") or "").strip()
        email = normalise_email(row.get("email") or "")
        name = (row.get("name") or "").strip()
        role = (row.get("role") or "").strip().lower()
        password = row.get("password") or None
        if not org or not name:
            problems.append(f"line {line}: org and name are required")
        if problem := email_problem(email):
            problems.append(f"line {line}: {problem}")
        elif email in seen:
            problems.append(f"line {line}: {email} appears twice in the file")
        seen.add(email)
        if role not in ROLES:
            problems.append(f"line {line}: role must be principal or member, not {role!r}")
        if password is not None and (problem := password_problem(password)):
            problems.append(f"line {line}: password {problem}")
        rows.append((org, email, name, role, password))
    for email in seen:
        if await store.users.find_by_email(email) is not None:
            problems.append(f"{email}: an account with this email exists already")
    org_ids: dict[str, str] = {}
    unknown_orgs = []
    for org_name in {r[0] for r in rows if r[0]}:
        org = await store.organisations.find_by_name(org_name)
        if org is not None:
            org_ids[org_name] = org.id
        elif create_orgs:
            unknown_orgs.append(org_name)
        else:
            problems.append(f"{org_name}: no such organisation (use --create-orgs to add it)")
    if problems:
        raise ImportRowError("\n".join(sorted(problems)))
    new_orgs = {new_id("org"): name for name in sorted(unknown_orgs)}
    org_ids.update({name: org_id for org_id, name in new_orgs.items()})
    generated: list[tuple[str, str]] = []
    new_users = []
    for org, email, name, role, password in rows:
        if password is None:
            password = secrets.token_urlsafe(15)
            generated.append((email, password))
        new_users.append(
            NewUser(
                org_id=org_ids[org],
                email=email,
                display_name=name,
                role=role,
                password_hash=passwords.hash(password),
            )
        )
    users = await store.users.add_many(new_users, now=now, new_orgs=new_orgs)
    # Every organisation and account it added is audited as if added one by one, and the
    # import itself names the accounts it brought in.
    events: list[Event] = [OrgAdded(org_id=org_id, name=name) for org_id, name in new_orgs.items()]
    events += [UserAdded(user_id=u.id, org_id=u.org_id, email=u.email, role=u.role) for u in users]
    accounts = tuple({"id": u.id, "email": u.email, "org_id": u.org_id} for u in users)
    events.append(UsersImported(count=len(users), users=accounts))
    for event in events:
        await store.audit.record(event, at=now, actor="cli")
    return ImportResult(users=users, generated=generated)
