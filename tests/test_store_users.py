"""Tests for the user repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.store import MIGRATIONS, NewUser, Organisation, SqliteDatabase, Store, User
from gateway.store.users import email_key


@pytest.fixture
async def org(store: Store) -> Organisation:
    return await store.organisations.add(name="Acme", now=1.0)


async def _add(store: Store, org: Organisation, email: str, role: str = "member") -> User:
    return await store.users.add(
        org_id=org.id,
        email=email,
        display_name=email.split("@")[0],
        role=role,
        password_hash="$argon2id$hash",
        now=10.0,
    )


def _new(org: Organisation, email: str, role: str = "member") -> NewUser:
    return NewUser(
        org_id=org.id, email=email, display_name=email, role=role, password_hash="$argon2id$h"
    )


async def test_an_added_user_can_be_read_back(store: Store, org: Organisation) -> None:
    user = await store.users.add(
        org_id=org.id,
        email="Alice@Example.com",
        display_name="Alice",
        role="principal",
        password_hash="$argon2id$abc",
        now=42.0,
    )
    assert user == User(
        id=user.id,
        org_id=org.id,
        email="Alice@Example.com",
        display_name="Alice",
        role="principal",
        password_hash="$argon2id$abc",
        disabled=False,
        created_at=42.0,
    )
    assert user.id.startswith("usr_")
    assert await store.users.get(user.id) == user


async def test_a_given_user_id_is_used(store: Store, org: Organisation) -> None:
    user = await store.users.add(
        org_id=org.id,
        email="a@example.com",
        display_name="A",
        role="member",
        password_hash="h",
        now=1.0,
        user_id="usr_fixed",
    )
    assert (await store.users.get("usr_fixed")) == user


async def test_duplicate_email_is_rejected_whatever_its_case(
    store: Store, org: Organisation
) -> None:
    await _add(store, org, "alice@example.com")
    with pytest.raises(ConflictError, match=r"ALICE@EXAMPLE\.COM"):
        await _add(store, org, "ALICE@EXAMPLE.COM")
    assert len(await store.users.list()) == 1


async def test_a_user_for_an_unknown_organisation_is_rejected(store: Store) -> None:
    ghost = Organisation(id="org_ghost", name="Ghost", created_at=0.0)
    with pytest.raises(NotFoundError, match="org_ghost"):
        await _add(store, ghost, "a@example.com")


async def test_an_unknown_role_is_rejected(store: Store, org: Organisation) -> None:
    with pytest.raises(StoreError, match="role"):
        await _add(store, org, "a@example.com", role="admin")
    assert await store.users.list() == []


async def test_getting_an_unknown_user_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="usr_nope"):
        await store.users.get("usr_nope")


async def test_users_are_found_by_email_whatever_its_case(store: Store, org: Organisation) -> None:
    user = await _add(store, org, "Bob@Example.com")
    assert await store.users.find_by_email("bob@example.com") == user
    assert await store.users.find_by_email("BOB@EXAMPLE.COM") == user
    assert await store.users.find_by_email("carol@example.com") is None


async def test_users_are_listed_all_or_by_organisation(store: Store, org: Organisation) -> None:
    other = await store.organisations.add(name="Other", now=1.0)
    a = await _add(store, org, "a@example.com")
    b = await _add(store, other, "b@example.com")
    c = await _add(store, org, "c@example.com")
    assert await store.users.list() == [a, b, c]
    assert await store.users.list(org.id) == [a, c]
    assert await store.users.list(other.id) == [b]
    assert await store.users.list("org_none") == []


async def test_add_many_stores_every_row(store: Store, org: Organisation) -> None:
    rows = [_new(org, f"user{n}@example.com") for n in range(5)]
    users = await store.users.add_many(rows, now=7.0)
    assert [user.email for user in users] == [row.email for row in rows]
    assert all(user.created_at == 7.0 and not user.disabled for user in users)
    assert len({user.id for user in users}) == 5
    assert await store.users.list() == users


async def test_add_many_of_nothing_stores_nothing(store: Store) -> None:
    assert await store.users.add_many([], now=1.0) == []


async def test_add_many_is_all_or_nothing_when_a_row_clashes_with_a_stored_user(
    store: Store, org: Organisation
) -> None:
    existing = await _add(store, org, "taken@example.com")
    rows = [_new(org, "new1@example.com"), _new(org, "TAKEN@example.com"), _new(org, "n@x.com")]
    with pytest.raises(ConflictError, match="user 2 of 3"):
        await store.users.add_many(rows, now=1.0)
    assert await store.users.list() == [existing]


async def test_add_many_is_all_or_nothing_when_two_rows_clash(
    store: Store, org: Organisation
) -> None:
    rows = [
        _new(org, "same@example.com"),
        _new(org, "other@example.com"),
        _new(org, "SAME@example.com"),
    ]
    with pytest.raises(ConflictError, match="user 3 of 3"):
        await store.users.add_many(rows, now=1.0)
    assert await store.users.list() == []


async def test_add_many_is_all_or_nothing_when_a_row_is_invalid(
    store: Store, org: Organisation
) -> None:
    ghost = Organisation(id="org_ghost", name="Ghost", created_at=0.0)
    with pytest.raises(NotFoundError, match="user 2 of 2"):
        await store.users.add_many([_new(org, "a@x.com"), _new(ghost, "b@x.com")], now=1.0)
    with pytest.raises(StoreError, match="user 1 of 1: role"):
        await store.users.add_many([_new(org, "c@x.com", role="owner")], now=1.0)
    assert await store.users.list() == []


async def test_a_user_can_be_disabled_and_enabled_again(store: Store, org: Organisation) -> None:
    user = await _add(store, org, "a@example.com")
    await store.users.set_disabled(user.id, True, now=0.0)
    assert (await store.users.get(user.id)).disabled is True
    await store.users.set_disabled(user.id, False, now=0.0)
    assert (await store.users.get(user.id)).disabled is False


async def test_changing_an_unknown_user_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.users.set_disabled("usr_nope", True, now=0.0)


async def test_add_many_adds_new_organisations_in_the_same_transaction(
    store: Store, org: Organisation
) -> None:
    await _add(store, org, "taken@example.com")
    fresh = Organisation(id="org_fresh", name="Fresh Co", created_at=0.0)
    good = [_new(fresh, "a@fresh.example")]
    bad = [*good, _new(org, "TAKEN@example.com")]
    with pytest.raises(ConflictError):
        await store.users.add_many(bad, now=1.0, new_orgs={"org_fresh": "Fresh Co"})
    assert await store.organisations.find_by_name("Fresh Co") is None
    users = await store.users.add_many(good, now=1.0, new_orgs={"org_fresh": "Fresh Co"})
    assert [u.org_id for u in users] == ["org_fresh"]
    assert (await store.organisations.get("org_fresh")).name == "Fresh Co"


@pytest.mark.parametrize(
    ("email", "key"),
    [
        ("Ava@Harbour.Example", "ava@harbour.example"),
        ("ava@harbour.example", "ava@harbour.example"),
        # Only ASCII letters fold, as SQLite's NOCASE and lower() did.
        ("ÉLODIE@x.example", "Élodie@x.example"),
    ],
)
def test_emails_are_compared_with_ascii_letters_lower_cased(email: str, key: str) -> None:
    assert email_key(email) == key


async def test_users_stored_before_version_4_keep_a_case_blind_email_and_their_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    old = await SqliteDatabase.open(path, migrations=MIGRATIONS[:3])
    async with old.transaction() as tx:
        for org_id in ("org_b", "org_a"):
            await tx.execute(
                "INSERT INTO organisations (id, name, created_at) VALUES (:id, :id, 1)",
                {"id": org_id},
            )
        for user_id, email in [("usr_z", "Zed@Example.com"), ("usr_a", "amy@example.com")]:
            await tx.execute(
                "INSERT INTO users (id, org_id, email, display_name, role, password_hash,"
                " created_at) VALUES (:id, 'org_b', :email, 'N', 'member', 'h', 1)",
                {"id": user_id, "email": email},
            )
    await old.close()
    async with await Store.open(path) as store:
        found = await store.users.find_by_email("zed@example.COM")
        assert found is not None
        assert found.id == "usr_z"
        assert [org.id for org in await store.organisations.list()] == ["org_b", "org_a"]
        with pytest.raises(ConflictError):
            await _add(store, await store.organisations.get("org_a"), "AMY@example.com")
        added = await _add(store, await store.organisations.get("org_a"), "new@example.com")
        assert [user.id for user in await store.users.list()] == ["usr_z", "usr_a", added.id]


async def test_users_and_organisations_are_searched_by_text_as_typed(
    store: Store, org: Organisation
) -> None:
    other = await store.organisations.add(name="Bolt 100% Co_op", now=2.0)
    ann = await _add(store, org, "Ann@Acme.example")
    bob = await _add(store, org, "bob@acme.example")
    percent = await store.users.add(
        org_id=other.id, email="c_d@bolt.example", display_name="Cé 100%", role="principal",
        password_hash="$argon2id$hash", now=11.0,
    )  # fmt: skip
    assert await store.users.search("ACME", limit=10) == [ann, bob]
    assert await store.users.search("ann", limit=10) == [ann]  # the display name
    assert await store.users.search("%", limit=10) == [percent]
    assert await store.users.search("_", limit=10) == [percent]
    assert await store.users.search("", limit=10) == [ann, bob, percent]
    assert await store.users.search("", limit=2, offset=1) == [bob, percent]
    assert await store.users.search("", org_id=other.id, limit=10) == [percent]
    assert await store.users.search("nobody", limit=10) == []
    assert [o.name for o in await store.organisations.search("co_op", limit=5)] == [other.name]
    assert await store.organisations.search("%", limit=5) == [other]
    assert len(await store.organisations.search("", limit=1)) == 1
    # Non-ASCII letters are matched as typed (only ASCII case is folded, as SQL's lower does).
    ecole = await store.organisations.add(name="École Ltd", now=3.0)
    assert await store.organisations.search("École", limit=5) == [ecole]
    assert await store.organisations.search("ÉCOLE LTD", limit=5) == [ecole]  # ASCII folded
    assert await store.organisations.search("école", limit=5) == []  # É is not é
    assert await store.users.search("Cé", limit=10) == [percent]
    with pytest.raises(ValueError, match="limit"):
        await store.users.search("", limit=0)
