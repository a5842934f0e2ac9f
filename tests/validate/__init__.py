"""Specifications of ``filterdb.validate``."""
