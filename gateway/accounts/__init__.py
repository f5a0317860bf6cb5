"""Local accounts: organisations, users and their passwords."""
