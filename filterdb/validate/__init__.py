"""Validation of a dataset: pandera schemas (package data in ``schemas/``), the weights pass and
the independent recheck of the statistics."""
