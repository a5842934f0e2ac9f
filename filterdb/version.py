"""The package version, in one module that imports nothing (``filterdb.__version__``).

Modules that record the version import it from here, never from the package ``__init__``,
so no import goes back up to the package.
"""

__version__ = "0.3.0"
