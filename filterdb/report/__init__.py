"""Reporting from the statistics files: figures, the Markdown report with the replication table,
and the offline page template of ``dvc plots``."""
