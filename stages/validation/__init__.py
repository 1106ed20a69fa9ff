"""Great Expectations gate over the pipeline's tables (used by the ``validate`` stage)."""
