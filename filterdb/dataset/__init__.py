"""The dataset: the data contract's names and codes, the netCDF writer and assembly, chunked
readers, the ``ds.filterdb`` accessor, export and summary."""
