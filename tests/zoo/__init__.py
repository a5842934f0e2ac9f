"""Specifications of ``filterdb.zoo``."""
