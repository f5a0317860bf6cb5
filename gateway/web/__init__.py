"""The gateway's own web surface: the request context and gate that apply decisions, pages
and JSON API."""
