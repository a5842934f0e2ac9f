"""Specifications of ``filterdb.stats``."""
