"""Data sources: each writes or reads the raw layout of ``stages.schema``."""
