"""nurture's domain: configuration, data model, audiences, planning, rendering and the ledger.

Nothing in this package imports dramatiq, httpx or smtplib; ``workers`` adapts it to the
runtime (broker, actors, channels).
"""
