"""What `xero-gateway demo` runs: a sample app to put the gateway in front of."""
