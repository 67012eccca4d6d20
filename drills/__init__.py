"""Failure drills (`make drill`): faults injected into a running pimsync, each ending with a ledger."""
