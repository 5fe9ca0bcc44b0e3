"""Options of each channel kind (``[channels.NAME]``), one module per kind."""
