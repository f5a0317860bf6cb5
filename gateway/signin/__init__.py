"""Signing in: the first factor, sessions with server-side timeouts, and known devices."""
