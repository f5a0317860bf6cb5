"""The policy service: stored policies and facts in memory, decisions, policy files, reports."""
