"""The error types that mean "bad input" (printed without a traceback by the CLI)."""

from __future__ import annotations


def _user_errors() -> tuple[type[BaseException], ...]:
    from filterdb.extract import ExtractionError
    from filterdb.sources import ModelLoadError
    from filterdb.store import StoreError
    from filterdb.zoo import ParamsError

    errors: list[type[BaseException]] = [
        ExtractionError,
        ModelLoadError,
        ParamsError,
        StoreError,
        FileNotFoundError,
        OSError,
    ]
    from filterdb.release import ReleaseError
    from filterdb.schema import SchemaValidationError
    from filterdb.upstream import UpstreamFormatError

    errors += [ReleaseError, SchemaValidationError, UpstreamFormatError]
    return tuple(errors)


USER_ERRORS = _user_errors()
