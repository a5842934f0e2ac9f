"""Specifications of ``filterdb.dataset``."""
