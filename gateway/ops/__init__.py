"""Operating the gateway: metrics and structured logs."""
