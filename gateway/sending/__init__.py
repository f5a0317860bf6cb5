"""Sending one-time codes by SMS and email: limits, storage, delivery off the request's path."""
