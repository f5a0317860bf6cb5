"""Second factors, pure: TOTP, one-time and recovery codes, the attempt throttle, destinations."""
