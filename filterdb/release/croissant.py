"""Croissant metadata of a release (``releases/vX.Y.Z/croissant.json``).

`Croissant <http://mlcommons.org/croissant/1.0>`_ is the JSON-LD vocabulary (on top of
schema.org) in which ML datasets describe themselves to search engines and loaders. A release's
``croissant.json`` names the dataset, its licence, how to cite it, one ``cr:FileObject`` per
artifact with its ``sha256`` and ``contentSize``, and three record sets: the model table
(``models.csv``), the layer table (``layers.csv``) and the fields of the filter array
(``filters.nc``, one record per 3x3 filter).

:func:`write_croissant` is called by :func:`filterdb.release.publish.build_release` before the
manifest is computed, so ``croissant.json`` is itself an artifact with a sha256 in the manifest
(it cannot list its own hash). :func:`check_croissant` is called by
:func:`filterdb.release.check.validate_release`: it checks that the file's checksums agree with
the manifest, and validates it with ``mlcroissant`` when that is installed (the ``[croissant]``
extra); otherwise it says it skipped that check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from filterdb.atomic import write_atomic_text
from filterdb.dataset.contract import DATA_LICENSE, LICENSE_NOTE
from filterdb.dataset.tables import read_tables
from filterdb.hashes import file_digests
from filterdb.optional import is_available, require

__all__ = [
    "CONFORMS_TO",
    "CROISSANT_FILE",
    "check_croissant",
    "croissant_metadata",
    "write_croissant",
]

CROISSANT_FILE = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.0"

#: Where the study the dataset builds on is published; the dataset's ``url`` until
#: ``CITATION.cff`` names a home of its own (``url`` or ``repository-code``).
STUDY_URL = "https://arxiv.org/abs/2203.15331"

#: The JSON-LD context of Croissant 1.0 (the spec's terms; schema.org is the default vocabulary).
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

#: file suffix -> encodingFormat (a MIME type)
ENCODINGS = {
    ".nc": "application/x-netcdf",
    ".csv": "text/csv",
    ".md": "text/markdown",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}

#: the filter array's variables described as fields (dimension ``filter``)
_FILTER_FIELDS = ("weight", "filter_layer")


class _Report(Protocol):
    checked: list[str]
    skipped: list[str]
    problems: list[str]


def _data_type(dtype: Any) -> str:
    """Croissant data type of a numpy/pandas dtype."""
    dtype = np.dtype(dtype) if not isinstance(dtype, pd.api.extensions.ExtensionDtype) else dtype
    kind = getattr(dtype, "kind", "O")
    if kind == "b":
        return "sc:Boolean"
    if kind in "iu":
        return "sc:Integer"
    if kind == "f":
        return {4: "cr:Float32", 8: "cr:Float64"}.get(dtype.itemsize, "sc:Float")
    return "sc:Text"


def _citation(root: Path | None) -> dict[str, Any]:
    """``CITATION.cff`` of the repository (empty when absent or unreadable)."""
    path = None if root is None else Path(root) / "CITATION.cff"
    if path is None or not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _authors(entry: Mapping[str, Any]) -> str:
    names = []
    for a in entry.get("authors") or []:
        if "family-names" in a:
            names.append(f"{a['family-names']}, {a.get('given-names', '')}".strip(", "))
        elif "name" in a:
            names.append("{" + str(a["name"]) + "}")
    return " and ".join(names)


def cite_as(citation: Mapping[str, Any], version: str) -> str:
    """BibTeX of the software release and of the study, from ``CITATION.cff``'s content.

    Parameters
    ----------
    citation : mapping
        The parsed ``CITATION.cff`` (``title``, ``authors``, ``preferred-citation``); may be
        empty, then the study alone is cited.
    version : str
        The release version.

    Returns
    -------
    str
        One or two BibTeX entries.

    Examples
    --------
    >>> print(cite_as({}, "1.0.0").splitlines()[0])
    @inproceedings{gavrikov2022cnnfilterdb,
    """
    entries = []
    if citation.get("title"):
        entries.append(
            f"@misc{{filterdb_v{version.replace('.', '_')},\n"
            f"  title = {{{citation['title']}}},\n"
            f"  author = {{{_authors(citation) or 'the filterdb authors'}}},\n"
            f"  note = {{Dataset release v{version}}},\n"
            f"  version = {{{version}}}\n}}"
        )
    study = citation.get("preferred-citation") or {}
    title = study.get(
        "title", "CNN Filter DB: An Empirical Investigation of Trained Convolutional Filters"
    )
    authors = _authors(study) or "Gavrikov, Paul and Keuper, Janis"
    venue = (study.get("conference") or {}).get(
        "name", "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)"
    )
    entries.append(
        "@inproceedings{gavrikov2022cnnfilterdb,\n"
        f"  title = {{{title}}},\n  author = {{{authors}}},\n  booktitle = {{{venue}}},\n"
        f"  year = {{{study.get('year', 2022)}}}\n}}"
    )
    return "\n".join(entries[::-1])


def _file_object(name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "@type": "cr:FileObject",
        "@id": name,
        "name": name,
        "contentUrl": name,  # relative to croissant.json, i.e. inside the release folder
        "encodingFormat": ENCODINGS.get(Path(name).suffix.lower(), "application/octet-stream"),
        "contentSize": f"{int(entry['size'])} B",
        "sha256": str(entry["sha256"]),
    }


def _table_record_set(
    set_id: str,
    file_id: str,
    table: pd.DataFrame,
    description: str,
    references: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A record set of a CSV written by ``table.to_csv`` (the index is the first column)."""
    index = str(table.index.name)
    columns = [(index, table.index.dtype), *((str(c), t) for c, t in table.dtypes.items())]
    fields = []
    for name, dtype in columns:
        field: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": f"{set_id}/{name}",
            "name": name,
            "dataType": _data_type(dtype),
            "source": {"fileObject": {"@id": file_id}, "extract": {"column": name}},
        }
        if references and name in references:
            field["references"] = {"field": {"@id": references[name]}}
        fields.append(field)
    return {
        "@type": "cr:RecordSet",
        "@id": set_id,
        "name": set_id,
        "description": description,
        "key": {"@id": f"{set_id}/{index}"},
        "field": fields,
    }


def _filter_record_set(ds: xr.Dataset, file_id: str) -> dict[str, Any]:
    """The filter array's fields: one record per 3x3 filter of ``filters.nc``."""
    fields = []
    for name in _FILTER_FIELDS:
        if name not in ds.variables:
            continue
        var = ds.variables[name]
        shape = ", ".join(f"{d}={ds.sizes[d]}" for d in var.dims)
        long_name = str(var.attrs.get("long_name", name))
        fields.append(
            {
                "@type": "cr:Field",
                "@id": f"filters/{name}",
                "name": name,
                "description": f"{long_name}; netCDF variable {name}({shape}), {var.dtype}",
                "dataType": _data_type(var.dtype),
                "source": {"fileObject": {"@id": file_id}, "extract": {"column": name}},
            }
        )
    return {
        "@type": "cr:RecordSet",
        "@id": "filters",
        "name": "filters",
        "description": (
            f"The {ds.sizes.get('filter', 0):,} 3x3 filters of filters.nc (CF-1.10 netCDF4, "
            "contiguous ragged array): one record per filter along the `filter` dimension; "
            "`weight` holds its 3x3 kernel (ky, kx) as float32 and `filter_layer` its row of "
            "the layer table. Read with xarray: ds.filterdb.filters(...)."
        ),
        "field": fields,
    }


def croissant_metadata(
    version: str,
    artifacts: Mapping[str, Mapping[str, Any]],
    models: pd.DataFrame,
    layers: pd.DataFrame,
    filters: xr.Dataset,
    citation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Croissant 1.0 JSON-LD document of one release.

    Parameters
    ----------
    version : str
        The release version, e.g. ``"0.2.0"``.
    artifacts : mapping
        Artifact name (path inside the release folder) -> record with ``sha256`` and ``size``,
        as in the manifest; one ``cr:FileObject`` each.
    models, layers : pandas.DataFrame
        The model table (index ``model``) and the layer table (index ``layer``), as
        :func:`filterdb.dataset.tables.read_tables` returns them and ``models.csv``/``layers.csv``
        hold.
    filters : xarray.Dataset
        The opened ``filters.nc`` (only metadata is read).
    citation : mapping, optional
        The parsed ``CITATION.cff``: ``citeAs``, ``url``, creator and keywords come from it.

    Returns
    -------
    dict
        JSON-serializable; deterministic for the same inputs (no timestamps).
    """
    citation = dict(citation or {})
    files = sorted(artifacts)
    record_sets = []
    if "models.csv" in artifacts:
        record_sets.append(
            _table_record_set(
                "models",
                "models.csv",
                models,
                "One row per model: id, meta-parameters (task, visual category, training data, "
                "architecture, family, source, training, weight precision, BatchNorm folding, "
                "licence of the weights), provenance, parameter and filter counts.",
            )
        )
    if "layers.csv" in artifacts:
        record_sets.append(
            _table_record_set(
                "layers",
                "layers.csv",
                layers,
                "One row per conv layer with 3x3 filters: its model, depth, channels, groups, "
                "and its range of the filter array (layer_first_filter, layer_filter_count).",
                references={"model": "models/model"} if "models.csv" in artifacts else None,
            )
        )
    if "filters.nc" in artifacts:
        record_sets.append(_filter_record_set(filters, "filters.nc"))
    creators = [
        {"@type": "sc:Organization", "name": str(a["name"])}
        if "name" in a
        else {"@type": "sc:Person", "name": f"{a.get('given-names', '')} {a['family-names']}"}
        for a in citation.get("authors") or [{"name": "the filterdb authors"}]
    ]
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": "filterdb",
        "description": (
            f"filterdb v{version}: {models.shape[0]} convolutional networks, {layers.shape[0]} "
            f"layers with 3x3 convolutions and {filters.sizes.get('filter', 0):,} trained 3x3 "
            "filters with their models' meta-parameters and layer depth, plus degeneracy and "
            "distribution-shift statistics; an open, versioned CNN Filter DB (Gavrikov & "
            "Keuper, CVPR 2022). " + LICENSE_NOTE
        ),
        "license": f"https://spdx.org/licenses/{DATA_LICENSE}.html",
        "citeAs": cite_as(citation, version),
        "url": str(citation.get("url") or citation.get("repository-code") or STUDY_URL),
        "version": version,
        "creator": creators,
        "keywords": [str(k) for k in citation.get("keywords") or []],
        "isLiveDataset": False,
        "distribution": [_file_object(name, artifacts[name]) for name in files],
        "recordSet": record_sets,
    }


def write_croissant(
    folder: str | os.PathLike[str],
    version: str,
    artifacts: Mapping[str, Mapping[str, Any]],
    root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write ``croissant.json`` into a release folder; return its digests for the manifest.

    Parameters
    ----------
    folder : path-like
        The (temporary) release folder holding the artifacts, ``filters.nc`` among them.
    version : str
        The release version.
    artifacts : mapping
        Artifact name -> record with ``sha256`` and ``size`` (the manifest's ``artifacts``);
        ``croissant.json`` itself is left out of its distribution.
    root : path-like, optional
        The repository, whose ``CITATION.cff`` gives ``citeAs``, ``url`` and the creators.

    Returns
    -------
    dict
        ``size``, ``sha256`` and ``md5`` of the written file (a manifest artifact record).
    """
    folder = Path(folder)
    listed = {k: v for k, v in artifacts.items() if k != CROISSANT_FILE}
    with xr.open_dataset(folder / "filters.nc") as ds:
        models, layers, _ = read_tables(ds)
        doc = croissant_metadata(
            version, listed, models, layers, ds, _citation(None if root is None else Path(root))
        )
    path = folder / CROISSANT_FILE
    write_atomic_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", path)
    return file_digests(path)


def check_croissant(
    folder: str | os.PathLike[str], manifest: Mapping[str, Any], report: _Report
) -> None:
    """Check a release's ``croissant.json``; add what was checked, skipped or wrong to ``report``.

    Its ``distribution`` must name every other artifact of the manifest with the same sha256 and
    size; then ``mlcroissant`` validates the document when it is installed (else the check is
    reported as skipped, naming the extra).

    Parameters
    ----------
    folder : path-like
        The release folder.
    manifest : mapping
        Its parsed ``manifest.json``.
    report : ReleaseReport
        Gets lines appended to ``checked``, ``skipped`` and ``problems``.
    """
    folder = Path(folder)
    path = folder / CROISSANT_FILE
    artifacts = manifest.get("artifacts") or {}
    if not path.is_file():
        if CROISSANT_FILE not in artifacts:  # releases made before croissant.json existed
            report.skipped.append(f"{CROISSANT_FILE}: none (the release predates it)")
        return  # listed but absent: already reported as missing
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        listed = {
            d["@id"]: (d.get("sha256"), d.get("contentSize"))
            for d in doc.get("distribution", [])
            if isinstance(d, dict) and "@id" in d
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        report.problems.append(f"{path}: not a Croissant JSON-LD document: {exc}")
        return
    expected = {
        name: (a.get("sha256"), f"{a.get('size')} B")
        for name, a in artifacts.items()
        if name != CROISSANT_FILE
    }
    wrong = sorted(n for n in set(expected) | set(listed) if expected.get(n) != listed.get(n))
    if wrong:
        shown = ", ".join(wrong[:8]) + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")
        report.problems.append(
            f"{path}: distribution disagrees with the manifest (sha256 or size) for {shown}"
        )
        return
    report.checked.append(f"{CROISSANT_FILE} lists every artifact with the manifest's sha256")
    if not is_available("mlcroissant"):
        report.skipped.append(
            f"{CROISSANT_FILE} not validated against Croissant 1.0: mlcroissant is not "
            "installed (pip install 'filterdb[croissant]')"
        )
        return
    mlc = require("mlcroissant", extra="croissant", purpose="validating croissant.json")
    try:
        mlc.Dataset(jsonld=str(path))
    except mlc.ValidationError as exc:
        report.problems.append(f"{path}: mlcroissant: {exc}")
        return
    report.checked.append(f"{CROISSANT_FILE} passes mlcroissant's validation (Croissant 1.0)")
