"""The specification of filterdb: ``tests/<folder>/`` mirrors ``filterdb/<folder>/``.

The top level holds the tests of the top-level modules, the command line and the whole pipeline,
and the shared helpers (``tests.conftest``, ``tests.conftest_stats``, ``tests.small_release``).
"""
