"""Statistics over the dataset: degeneracy and distribution shifts (with their parameters,
accumulators, single-process and dask drivers and writers), the training sweep, and the dask
fan-out of the extraction."""
