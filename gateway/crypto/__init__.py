"""Keys derived per purpose from the secret key: HMAC signing, and AES-GCM sealing at rest."""
