"""What a release validation found: checked, skipped and wrong, one line each.

:class:`ReleaseReport` is what :func:`filterdb.release.check.validate_release` returns and every
check of :mod:`filterdb.release.manifest`, :mod:`filterdb.release.artifacts`,
:mod:`filterdb.release.sums` and :mod:`filterdb.release.croissant` appends to;
:func:`show_name` prints a file name in its lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReleaseReport", "show_name"]


@dataclass
class ReleaseReport:
    """What :func:`~filterdb.release.check.validate_release` checked, skipped and found wrong."""

    folder: str
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (skips are not failures)."""
        return not self.problems

    def __str__(self) -> str:
        head = f"{self.folder}: " + ("valid" if self.ok else f"{len(self.problems)} problem(s)")
        lines = [head]
        lines += [f"  FAIL {p}" for p in self.problems]
        lines += [f"  ok   {c}" for c in self.checked]
        lines += [f"  skip {s}" for s in self.skipped]
        return "\n".join(lines)


def show_name(name: object) -> str:
    """A file name as printable text (names that are not UTF-8 keep their escapes)."""
    return str(name).encode("utf-8", "backslashreplace").decode("utf-8")
