"""The dataset, one module per job: the data contract's names and codes (``contract``), the flag
encoder/decoder (``flags``), the netCDF writer (``write``), assembly of shards (``assemble``), the
tables (``tables``) and chunked readers (``reading``), the ``ds.filterdb`` accessor, the content
hash (``content_hash``), export and summary (``info``). Readers never import the writer."""
