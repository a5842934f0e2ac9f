"""Specifications of ``filterdb.train``."""
