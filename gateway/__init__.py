"""Xero MFA gateway: sign-in and two-factor rules in front of any Xero-connected web app."""

__version__ = "0.1.0"
