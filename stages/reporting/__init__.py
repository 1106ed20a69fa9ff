"""What the report stage draws, beside ``stages/report.py`` (the tables and text)."""
