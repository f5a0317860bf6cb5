"""Running the gateway: shared services opened once, listeners started on them, the process."""
