"""Statistics over the dataset: degeneracy, distribution shifts, their dask driver and the training
sweep."""
