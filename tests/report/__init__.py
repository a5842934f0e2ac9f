"""Specifications of ``filterdb.report``."""
