"""The xero-gateway command: serve, demo, check the config, administer accounts and policies."""
