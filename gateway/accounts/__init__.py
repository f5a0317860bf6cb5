"""Local accounts: organisations, users, passwords, and the Xero tenants organisations link."""
