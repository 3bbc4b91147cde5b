"""textkit: small text utilities (the Agent Factory demo project)."""

__version__ = "0.1.0"

# The public API: the backlog's tasks add their imports below, one per line.
