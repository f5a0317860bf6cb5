"""The gateway's state store: the only code that speaks SQL, behind one repository per aggregate."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from gateway.store.admin_tokens import AdminTokenRepository
from gateway.store.admins import Admin, AdminRepository, AdminSession
from gateway.store.audit import EVENT_FIELDS, AuditRepository, event_document
from gateway.store.changes import UserChangeRepository
from gateway.store.codes import OneTimeCodeRecord, OneTimeCodeRepository
from gateway.store.database import Database, Params, Row, Transaction
from gateway.store.dismissals import DismissalLimitError, DismissalRepository
from gateway.store.factor_changes import FactorChangeRepository
from gateway.store.factors import SEALED_COLUMNS, FactorRepository
from gateway.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, migrate
from gateway.store.organisations import OrganisationRepository
from gateway.store.passwords import PasswordRepository, ResetLink
from gateway.store.policies import (
    PolicyRepository,
    PreconditionFailedError,
    canonical_json,
    policy_document,
)
from gateway.store.records import (
    POLICY_CHANGES,
    ROLES,
    TENANT_SOURCES,
    AdminToken,
    AuditEntry,
    AuditEvent,
    NewUser,
    Organisation,
    PolicyChange,
    PolicyVersion,
    SessionRecord,
    StoredPolicy,
    Tenant,
    TenantChange,
    ThrottleState,
    User,
)
from gateway.store.reminders import Claim, ClaimKey, ReminderClaimRepository
from gateway.store.revocations import ChangeMarks, RevocationRepository, change_marks
from gateway.store.sealed import SealedColumn, register_sealed_column, sealed_columns
from gateway.store.service_keys import ServiceKey, ServiceKeyRepository
from gateway.store.sessions import SessionRepository
from gateway.store.sign_ins import SignIn, SignInRepository
from gateway.store.sqlite import SqliteDatabase
from gateway.store.tenants import TenantRepository, tenant_document
from gateway.store.throttle import ThrottleRepository
from gateway.store.users import UserRepository
from gateway.store.xero import XeroGrantRepository
from gateway.store.xero_authorizations import AuthorizationRecord, AuthorizationRepository
from gateway.store.xero_budgets import CountedBudget, RateBudgetRepository
from gateway.store.xero_webhooks import (
    NewWebhookEvent,
    StoredWebhookEvent,
    WebhookEventRepository,
)

__all__ = [
    "EVENT_FIELDS",
    "LATEST_VERSION",
    "MIGRATIONS",
    "POLICY_CHANGES",
    "ROLES",
    "SEALED_COLUMNS",
    "TENANT_SOURCES",
    "Admin",
    "AdminRepository",
    "AdminSession",
    "AdminToken",
    "AdminTokenRepository",
    "AuditEntry",
    "AuditEvent",
    "AuditRepository",
    "AuthorizationRecord",
    "AuthorizationRepository",
    "ChangeMarks",
    "Claim",
    "ClaimKey",
    "CountedBudget",
    "Database",
    "DismissalLimitError",
    "DismissalRepository",
    "FactorChangeRepository",
    "FactorRepository",
    "Migration",
    "NewUser",
    "NewWebhookEvent",
    "OneTimeCodeRecord",
    "OneTimeCodeRepository",
    "Organisation",
    "OrganisationRepository",
    "Params",
    "PasswordRepository",
    "PolicyChange",
    "PolicyRepository",
    "PolicyVersion",
    "PreconditionFailedError",
    "RateBudgetRepository",
    "ReminderClaimRepository",
    "ResetLink",
    "RevocationRepository",
    "Row",
    "SealedColumn",
    "ServiceKey",
    "ServiceKeyRepository",
    "SessionRecord",
    "SessionRepository",
    "SignIn",
    "SignInRepository",
    "SqliteDatabase",
    "Store",
    "StoredPolicy",
    "StoredWebhookEvent",
    "Tenant",
    "TenantChange",
    "TenantRepository",
    "ThrottleRepository",
    "ThrottleState",
    "Transaction",
    "User",
    "UserChangeRepository",
    "UserRepository",
    "WebhookEventRepository",
    "XeroGrantRepository",
    "canonical_json",
    "event_document",
    "migrate",
    "policy_document",
    "register_sealed_column",
    "sealed_columns",
    "tenant_document",
]


class Store:
    """The open database and a repository for each aggregate over it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.organisations = OrganisationRepository(db)
        self.users = UserRepository(db)
        self.sessions = SessionRepository(db)
        self.audit = AuditRepository(db)
        self.throttle = ThrottleRepository(db)
        self.revocations = RevocationRepository(db)
        self.changes = UserChangeRepository(db)
        self.policies = PolicyRepository(db)
        self.tenants = TenantRepository(db)
        self.dismissals = DismissalRepository(db)
        self.admin_tokens = AdminTokenRepository(db)
        self.admins = AdminRepository(db)
        self.codes = OneTimeCodeRepository(db)
        self.factors = FactorRepository(db)
        self.xero = XeroGrantRepository(db)
        self.service_keys = ServiceKeyRepository(db)
        self.xero_webhooks = WebhookEventRepository(db)
        self.xero_authorizations = AuthorizationRepository(db)
        self.passwords = PasswordRepository(db)
        self.reminders = ReminderClaimRepository(db)
        self.xero_budgets = RateBudgetRepository(db)
        self.sign_ins = SignInRepository(db)
        self.factor_changes = FactorChangeRepository(db)

    async def change_marks(self) -> ChangeMarks:
        """Where every change feed stands, in one statement."""
        return await change_marks(self.db)

    @classmethod
    async def open(cls, path: str | Path, busy_timeout_ms: int = 5000) -> Store:
        """Open (creating and migrating if need be) the SQLite database file at ``path``."""
        return cls(await SqliteDatabase.open(path, busy_timeout_ms=busy_timeout_ms))

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
