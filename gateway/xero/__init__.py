"""Xero custody: the identity client, the token vault and refresh, the rate governor."""
