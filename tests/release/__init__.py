"""Specifications of ``filterdb.release``."""
