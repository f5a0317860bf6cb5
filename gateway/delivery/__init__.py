"""Sending codes: one small protocol, with SMS over an HTTP API, email over SMTP, the demo's log."""
