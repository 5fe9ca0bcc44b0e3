"""Inbound callbacks, one module per provider family, paired with ``workers/channels``."""
