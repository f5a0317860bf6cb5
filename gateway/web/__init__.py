"""The gateway's own web surface: middleware that applies decisions, pages and JSON API."""
