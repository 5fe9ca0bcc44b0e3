"""Module tests of the domain, mirroring ``campaigns/``."""
