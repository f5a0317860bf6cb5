"""The gateway's keys, one per purpose, derived from ``[security] secret_key`` and rotated
through ``previous_secret_keys``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.crypto.derivation import DerivedKey, derive_key
from gateway.crypto.sealing import Sealer
from gateway.crypto.signing import Signer


@dataclass(frozen=True, kw_only=True)
class Keys:
    """What the secret key is used for, each with a key of its own.

    A new token, tag or sealed value uses the current secret; one made with a secret listed
    in ``previous_secret_keys`` is still accepted, so the secret can be rotated without
    signing everyone out.
    """

    csrf: Signer  # form tokens, bound to a session or the pre-sign-in nonce cookie
    names: Signer  # keyed hashes of what was typed as a sign-in name (throttle keys, audit)
    devices: Signer  # known-device cookies: this browser signed in to an account before
    at_rest: Sealer  # secrets kept in the store (authenticator seeds, phone numbers)
    service_keys: Signer  # keyed hashes of service keys, as the store keeps them
    xero_states: Signer  # keyed hashes of the Xero connect flow's single-use states
    webhook_forward: Signer  # signatures on the Xero webhook events forwarded to the app
    password_resets: Signer  # keyed hashes of password reset tokens, as the store keeps them

    @classmethod
    def derive(cls, secret_key: str, previous_secret_keys: Sequence[str] = ()) -> Keys:
        """The keys for ``secret_key``, accepting what ``previous_secret_keys`` made."""
        secrets = [secret_key, *(k for k in dict.fromkeys(previous_secret_keys) if k != secret_key)]

        def generations(purpose: str) -> list[DerivedKey]:
            return [derive_key(secret, purpose) for secret in secrets]

        csrf, names, at_rest = generations("csrf"), generations("names"), generations("at-rest")
        devices = generations("devices")
        service_keys = generations("service-keys")
        states, forward = generations("xero-states"), generations("webhook-forward")
        resets = generations("password-resets")
        return cls(
            csrf=Signer(csrf[0], csrf[1:]),
            names=Signer(names[0], names[1:]),
            devices=Signer(devices[0], devices[1:]),
            at_rest=Sealer(at_rest[0], at_rest[1:]),
            service_keys=Signer(service_keys[0], service_keys[1:]),
            xero_states=Signer(states[0], states[1:]),
            webhook_forward=Signer(forward[0], forward[1:]),
            password_resets=Signer(resets[0], resets[1:]),
        )
