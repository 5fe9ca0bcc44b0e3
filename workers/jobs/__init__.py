"""The Dramatiq runtime: broker, actors, delivery orchestration, the scheduler loop and in-process workers."""
