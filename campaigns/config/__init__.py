"""What config.toml may say: the schema per section, the channel option models, the
vocabulary (lifecycle stages, RFM defaults, channel families) and the value checks.
The bottom layer of the domain: it imports nothing else from ``campaigns``."""
