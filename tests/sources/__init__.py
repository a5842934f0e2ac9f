"""Specifications of ``filterdb.sources``."""
