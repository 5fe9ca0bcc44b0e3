"""nurture's runtime: broker, actors, scheduler loop, channels and the CLI.

Depends on :mod:`campaigns` (the domain); never the other way round.
"""
