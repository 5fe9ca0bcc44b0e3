"""Module tests of the runtime adapters, mirroring ``workers/``."""
