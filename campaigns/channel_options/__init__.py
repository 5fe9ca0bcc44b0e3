"""Typed options of the provider channels, one module per provider family.

Each model is a ``[channels.NAME]`` table in config.toml, told apart by ``kind``;
:mod:`campaigns.config` gathers them into one discriminated union. Secrets are never
options: a key ending in ``_env`` names the environment variable that holds one.
"""
