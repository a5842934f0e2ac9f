"""An offline page template for ``dvc plots show``: pinned vega, vega-lite and vega-embed inlined.

``dvc plots show`` fills an HTML template: where it holds ``{scripts}``, dvc-render writes
``<script>`` tags that load vega 5, vega-lite 5 and vega-embed 6 from a CDN, so without network
every vega plot of the page is blank. ``.dvc/config`` names this module's output as the page
template instead (``plots.html_template``, relative to ``.dvc/``); it holds ``{plot_divs}`` but
not ``{scripts}``, and carries the three libraries itself.

The libraries are npm packages pinned by version and by the sha256 of their archive
(:data:`PINS`, the schema of ``params.yaml: packages``). They are fetched once with ``npm pack``
into the archive cache that ``filterdb fetch`` fills (:mod:`filterdb.sources.fetch`), re-checked
at every use, and their minified builds are embedded byte for byte as ``data:`` URLs with a
subresource-integrity hash, so the browser itself refuses a changed script. They are not kept in
``params.yaml: packages``: those are the dataset's weight sources, which the release manifest
records. ``make packages`` runs ``python -m filterdb.report.plots_template``; the output is
generated, deterministic and ignored by git.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filterdb.atomic import write_atomic_text
from filterdb.errors import USER_ERRORS, FilterDBError
from filterdb.sources.fetch import PackageSpec, extract_package, fetch_archive

__all__ = [
    "DEFAULT_OUT",
    "PINS",
    "PLACEHOLDERS",
    "Library",
    "PlotsTemplateError",
    "build_template",
    "load_libraries",
    "main",
    "render_template",
]

#: The libraries in load order (vega-embed needs the globals of the other two). Major versions
#: are the ones dvc-render's CDN tags load (vega 5, vega-lite 5, vega-embed 6); within them, the
#: newest release. ``script`` is the minified UMD build embedded in the page.
PINS: dict[str, dict[str, Any]] = {
    "vega": {
        "registry": "npm",
        "name": "vega",
        "version": "5.33.1",
        "sha256": "1b8504b6731c5311be3269c4d84ca996a5cc293bc772283293ede20c490e16c3",
        "license": "BSD-3-Clause",
        "script": "build/vega.min.js",
    },
    "vega-lite": {
        "registry": "npm",
        "name": "vega-lite",
        "version": "5.23.0",
        "sha256": "e4cbfdd8f6f1abe381c59cd558fd6a559c12b1496bfdf2e0c3295263a40fe4da",
        "license": "BSD-3-Clause",
        "script": "build/vega-lite.min.js",
    },
    "vega-embed": {
        "registry": "npm",
        "name": "vega-embed",
        "version": "6.29.0",
        "sha256": "ecf1ee709c2bac9e0a4ead6908114b05b62c71493e10a8a4308109bb070f8eb1",
        "license": "BSD-3-Clause",
        "script": "build/vega-embed.min.js",
    },
}

#: Where ``make packages`` writes the template; ``.dvc/config`` names it relative to ``.dvc/``.
DEFAULT_OUT = Path(".dvc/plots-offline.html")
#: What dvc-render replaces in a template (``{plot_divs}`` is required; ``{scripts}`` is left out
#: on purpose: it would bring the CDN tags back).
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")
_META = ("package.json", "LICENSE")  # kept beside the script: licence field and text


class PlotsTemplateError(FilterDBError, ValueError):
    """A pinned library does not match its pin (name, version, licence) or cannot be embedded."""


@dataclass(frozen=True)
class Library:
    """One pinned library as embedded.

    Attributes
    ----------
    spec : PackageSpec
        Its pin (npm name, version, archive sha256, licence).
    script : str
        The embedded member of the archive (a minified UMD build).
    code : bytes
        That member's bytes, unchanged.
    license_text : str or None
        The archive's ``LICENSE`` file, None when it ships none.
    """

    spec: PackageSpec
    script: str
    code: bytes
    license_text: str | None

    @property
    def integrity(self) -> str:
        """Subresource-integrity value of the script (``sha256-`` and base64 of the digest)."""
        return "sha256-" + base64.b64encode(hashlib.sha256(self.code).digest()).decode("ascii")


def _spec(key: str, pin: Mapping[str, Any]) -> tuple[PackageSpec, str]:
    fields = {k: v for k, v in pin.items() if k != "script"}
    fields["keep"] = [str(pin["script"]), *_META]
    return PackageSpec.from_params(key, fields), str(pin["script"])


def load_libraries(
    pins: Mapping[str, Mapping[str, Any]] = PINS, download: bool = True
) -> list[Library]:
    """Fetch (once) and verify each pinned archive; read its script and licence.

    Parameters
    ----------
    pins : mapping
        Key -> pin (``params.yaml: packages`` fields plus ``script``, the member to embed), in
        load order.
    download : bool
        Fetch archives missing from the cache with ``npm pack`` (else a missing one is an error).

    Returns
    -------
    list of Library
        In the order of ``pins``.

    Raises
    ------
    filterdb.sources.ModelLoadError
        An archive is missing offline, the client failed, or its sha256 is not the pinned one.
    PlotsTemplateError
        The archive's ``package.json`` names another package, version or licence than the pin,
        or the archive has no such script.
    """
    libraries = []
    with tempfile.TemporaryDirectory(prefix="filterdb-plots-") as tmp:
        for key, pin in pins.items():
            spec, script = _spec(key, pin)
            folder = extract_package(spec, fetch_archive(spec, download=download), Path(tmp))
            meta = json.loads((folder / "package.json").read_text(encoding="utf-8"))
            got = (meta.get("name"), meta.get("version"), meta.get("license"))
            if got != (spec.name, spec.version, spec.license):
                raise PlotsTemplateError(
                    f"library {key!r}: the archive's package.json says name, version, licence "
                    f"{got}, the pin says {(spec.name, spec.version, spec.license)}"
                )
            if not (folder / script).is_file():
                raise PlotsTemplateError(f"library {key!r}: {spec.spec} has no file {script!r}")
            licence = folder / "LICENSE"
            libraries.append(
                Library(
                    spec,
                    script,
                    (folder / script).read_bytes(),
                    licence.read_text(encoding="utf-8") if licence.is_file() else None,
                )
            )
    return libraries


def render_template(libraries: Sequence[Library]) -> str:
    """The page template: dvc-render's page layout with the libraries embedded.

    Each script is a ``data:`` URL of its exact bytes with an ``integrity`` attribute, so no
    byte of it is rewritten or escaped and a browser runs it only if it is the pinned build.

    Raises
    ------
    PlotsTemplateError
        A licence text cannot sit in an HTML comment or holds a template placeholder.

    Examples
    --------
    >>> page = render_template([])
    >>> "{plot_divs}" in page and "{scripts}" not in page
    True
    """
    notes, tags = [], []
    for lib in libraries:
        s = lib.spec
        notes.append(
            f"  {s.name} {s.version} ({s.license}): npm archive sha256 {s.sha256}, "
            f"{lib.script} embedded below"
        )
        data = base64.b64encode(lib.code).decode("ascii")
        tags.append(
            f'    <script src="data:text/javascript;charset=utf-8;base64,{data}" '
            f'integrity="{lib.integrity}"></script>'
        )
    licences = []
    for lib in libraries:
        text = lib.license_text
        if text is None:
            text = f"{lib.spec.license} (package.json; the archive carries no licence file)"
        if "-->" in text or "--!>" in text or any(p in text for p in PLACEHOLDERS):
            raise PlotsTemplateError(
                f"library {lib.spec.key!r}: its licence text cannot be put in an HTML comment"
            )
        licences.append(f"{lib.spec.name} {lib.spec.version}:\n{text.strip()}\n")
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        "    {refresh_tag}",
        '    <meta charset="utf-8">',
        "    <title>DVC Plot</title>",
        "    <!-- Generated by `python -m filterdb.report.plots_template` (make packages); "
        "do not edit.",
        "  The page template of `dvc plots show` (.dvc/config: plots.html_template): the vega",
        "  libraries are embedded, so the plots render without network. Pinned npm packages:",
        *notes,
        "    -->",
        *tags,
        "    <style>",
        "        table {",
        "            border-spacing: 15px;",
        "        }",
        "    </style>",
        "</head>",
        "<body>",
        "    {plot_divs}",
        "</body>",
        "<!-- Licences of the embedded libraries",
        "",
        *licences,
        "-->",
        "</html>",
        "",
    ]
    return "\n".join(lines)


def build_template(
    out: str | Path = DEFAULT_OUT,
    pins: Mapping[str, Mapping[str, Any]] = PINS,
    download: bool = True,
) -> Path:
    """Write the offline template to ``out`` atomically (see :func:`load_libraries`).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic_text(render_template(load_libraries(pins, download=download)), out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m filterdb.report.plots_template [--out PATH] [--offline]``."""
    p = argparse.ArgumentParser(
        prog="python -m filterdb.report.plots_template",
        description="write the offline page template of `dvc plots show`",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"default: {DEFAULT_OUT}")
    p.add_argument(
        "--offline", action="store_true", help="never download; a missing archive is an error"
    )
    args = p.parse_args(argv)
    try:
        path = build_template(args.out, download=not args.offline)
    except USER_ERRORS as exc:
        print(f"filterdb: error: {exc}", file=sys.stderr)
        return 2
    versions = ", ".join(f"{k} {v['version']}" for k, v in PINS.items())
    print(f"plots template ({versions}) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
