"""The ``nurture`` command: the composition root that wires config, store, broker and channels."""
