"""Validation of a dataset: the schemas (package data in ``schemas/``) and their checks, the
weights pass and the independent recheck of the statistics.

Schema checks: :mod:`~filterdb.validate.tables` (model and layer tables),
:mod:`~filterdb.validate.layout` (the netCDF layout) and :mod:`~filterdb.validate.entry_meta`
(a zoo entry's meta-parameters), all reporting through :mod:`~filterdb.validate.failures`.
"""
