"""The accounting API's bodies in Xero's JSON shapes: Organisation, Contacts and Invoices.

Each tenant keeps its own contacts and invoices (``Ledger``); ``InvoiceInput`` turns a posted
invoice into one, or says which fields Xero's validation would reject.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.sandbox.xero_emulator.fixtures import EmulatedTenant

PROVIDER = "Xero MFA gateway emulator"


def ms_date(at: float) -> str:
    """Xero's JSON date: ``/Date(milliseconds+0000)/``."""
    return f"/Date({int(at * 1000)}+0000)/"


def envelope(now: float, **body: Any) -> dict[str, Any]:
    """The wrapper every accounting response has."""
    return {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": PROVIDER,
        "DateTimeUTC": ms_date(now),
        **body,
    }


def organisation(tenant: EmulatedTenant, *, created_at: float) -> dict[str, Any]:
    return {
        "OrganisationID": tenant.tenant_id,
        "APIKey": "",
        "Name": tenant.name,
        "LegalName": tenant.legal_name,
        "PaysTax": True,
        "Version": tenant.version,
        "OrganisationType": tenant.organisation_type,
        "BaseCurrency": tenant.base_currency,
        "CountryCode": tenant.country_code,
        "IsDemoCompany": False,
        "OrganisationStatus": "ACTIVE",
        "FinancialYearEndDay": 30 if tenant.country_code == "AU" else 31,
        "FinancialYearEndMonth": 6 if tenant.country_code == "AU" else 3,
        "SalesTaxBasis": "ACCRUALS" if tenant.country_code == "AU" else "INVOICE",
        "SalesTaxPeriod": "QUARTERLY1" if tenant.country_code == "AU" else "TWOMONTHS",
        "DefaultSalesTax": "Tax Exclusive",
        "DefaultPurchasesTax": "Tax Inclusive",
        "CreatedDateUTC": ms_date(created_at),
        "OrganisationEntityType": tenant.organisation_type,
        "Timezone": tenant.timezone,
        "ShortCode": tenant.short_code,
        "Class": "STANDARD",
        "Edition": "BUSINESS",
        "Addresses": [],
        "Phones": [],
        "ExternalLinks": [],
        "PaymentTerms": {},
    }


class ValidationError(Exception):
    """A posted body Xero would refuse; ``messages`` are its ValidationErrors."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def validation_body(messages: list[str]) -> dict[str, Any]:
    """Xero's 400 body for a ValidationException."""
    return {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [{"ValidationErrors": [{"Message": m} for m in messages]}],
    }


def _amount(value: Any, what: str, problems: list[str]) -> float:
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        problems.append(f"{what} must be a number")
        return 0.0


@dataclass
class Ledger:
    """One tenant's contacts and invoices."""

    currency: str
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def seeded(cls, tenant: EmulatedTenant, *, now: float) -> Ledger:
        ledger = cls(currency=tenant.base_currency)
        for number, contact in enumerate(tenant.contacts, start=1):
            ledger.contacts[contact.contact_id] = {
                "ContactID": contact.contact_id,
                "ContactStatus": "ACTIVE",
                "Name": contact.name,
                "EmailAddress": contact.email,
                "IsSupplier": False,
                "IsCustomer": True,
                "Addresses": [],
                "Phones": [],
                "ContactGroups": [],
                "HasAttachments": False,
                "UpdatedDateUTC": ms_date(now),
            }
            ledger.add_invoice(
                {
                    "Type": "ACCREC",
                    "Contact": {"ContactID": contact.contact_id},
                    "Reference": f"Seed {number}",
                    "Status": "AUTHORISED",
                    "LineItems": [
                        {"Description": "Monthly bookkeeping", "Quantity": 1, "UnitAmount": 440}
                    ],
                },
                now=now,
            )
        return ledger

    def add_invoice(self, posted: Any, *, now: float) -> dict[str, Any]:
        """Create an invoice from a posted one (Xero's PUT/POST ``Invoices`` item)."""
        problems: list[str] = []
        if not isinstance(posted, dict):
            raise ValidationError(["An invoice must be an object"])
        kind = posted.get("Type")
        if kind not in ("ACCREC", "ACCPAY"):
            problems.append("Invoice Type must be ACCREC or ACCPAY")
        contact_ref = posted.get("Contact")
        contact_id = contact_ref.get("ContactID") if isinstance(contact_ref, dict) else None
        contact = self.contacts.get(str(contact_id).lower()) if contact_id else None
        if contact is None:
            problems.append("A Contact with a known ContactID must be specified")
        lines_in = posted.get("LineItems", [])
        if not isinstance(lines_in, list):
            lines_in, problems = [], [*problems, "LineItems must be a list"]
        lines: list[dict[str, Any]] = []
        amounts: list[tuple[float, float]] = []
        for line in lines_in:
            if not isinstance(line, dict):
                problems.append("Each line item must be an object")
                continue
            quantity = _amount(line.get("Quantity", 1), "Quantity", problems)
            unit = _amount(line.get("UnitAmount", 0), "UnitAmount", problems)
            amounts.append((quantity, unit))
            lines.append(
                {
                    "LineItemID": str(uuid.uuid4()),
                    "Description": str(line.get("Description", "")),
                    "Quantity": quantity,
                    "UnitAmount": unit,
                    "TaxAmount": round(quantity * unit * 0.1, 2),
                    "LineAmount": round(quantity * unit, 2),
                }
            )
        status = posted.get("Status", "DRAFT")
        if status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            problems.append("Status must be DRAFT, SUBMITTED or AUTHORISED")
        if problems:
            raise ValidationError(problems)
        assert contact is not None
        subtotal = round(sum(quantity * unit for quantity, unit in amounts), 2)
        tax = round(subtotal * 0.1, 2)
        day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0)
        invoice_id = str(uuid.uuid4())
        invoice = {
            "Type": kind,
            "InvoiceID": invoice_id,
            "InvoiceNumber": f"INV-{len(self.invoices) + 1:04d}",
            "Reference": str(posted.get("Reference", "")),
            "Contact": {"ContactID": contact["ContactID"], "Name": contact["Name"]},
            "DateString": day.strftime("%Y-%m-%dT00:00:00"),
            "Date": ms_date(day.timestamp()),
            "DueDateString": (day + dt.timedelta(days=14)).strftime("%Y-%m-%dT00:00:00"),
            "DueDate": ms_date((day + dt.timedelta(days=14)).timestamp()),
            "Status": status,
            "LineAmountTypes": "Exclusive",
            "LineItems": lines,
            "SubTotal": subtotal,
            "TotalTax": tax,
            "Total": round(subtotal + tax, 2),
            "AmountDue": round(subtotal + tax, 2),
            "AmountPaid": 0.0,
            "CurrencyCode": self.currency,
            "UpdatedDateUTC": ms_date(now),
            "HasAttachments": False,
        }
        self.invoices[invoice_id] = invoice
        return invoice

    def invoice_list(self) -> list[dict[str, Any]]:
        """Invoices as Xero lists them: without their line items."""
        return [{k: v for k, v in i.items() if k != "LineItems"} for i in self.invoices.values()]
