"""Specifications of ``filterdb.extract``."""
