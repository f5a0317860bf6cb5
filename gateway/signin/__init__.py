"""Signing in: the first factor, sessions with server-side timeouts, and the attempt throttle."""
