"""Reminders before 2FA deadlines: what is due (pure), the emails, and sending each once."""
