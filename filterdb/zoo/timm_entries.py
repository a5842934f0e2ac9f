"""timm's pretrained registry as zoo entries.

:func:`generate_entries` makes one zoo entry (the ``params.yaml`` format, ``source: timm``) per
pretrained ``arch.tag`` of ``timm.list_pretrained()`` matching include/exclude globs, with
meta-parameters from :mod:`filterdb.zoo.timm_tags`; tags the table cannot map are returned as
*unmapped*, never dropped silently. :func:`filter_available` and :func:`weights_dir_overrides`
keep only models whose weights are on this machine, or point entries at local stand-in files.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filterdb.zoo.timm_tags import architecture_family, map_tag

__all__ = [
    "filter_available",
    "generate_entries",
    "list_pretrained_names",
    "pretrained_provenance",
    "weights_dir_overrides",
]

_PROVENANCE_FIELDS = ("license", "paper_ids", "paper_name", "origin_url", "hf_hub_id", "url")


def _timm() -> Any:
    """timm, imported through the timm source (which sets HF_HUB_OFFLINE before importing it)."""
    from filterdb.sources import timm_source

    return timm_source.timm


def list_pretrained_names(
    include: Sequence[str] = ("*",), exclude: Sequence[str] = ()
) -> list[str]:
    """Pretrained ``arch.tag`` names of timm's registry selected by fnmatch globs.

    Parameters
    ----------
    include : sequence of str
        A name is kept when it matches any of these (default: all).
    exclude : sequence of str
        ... and none of these.

    Returns
    -------
    list of str
        In timm's order (sorted by architecture).
    """
    timm = _timm()
    include = list(include) or ["*"]
    return [
        n
        for n in timm.list_pretrained()
        if "." in n
        and any(fnmatch.fnmatchcase(n, p) for p in include)
        and not any(fnmatch.fnmatchcase(n, p) for p in exclude)
    ]


def pretrained_provenance(name: str) -> dict[str, Any]:
    """Licence, paper ids, origin and hub ids of a pretrained name, from timm's config.

    Parameters
    ----------
    name : str
        ``arch.tag``.

    Returns
    -------
    dict
        The non-empty ones of ``license``, ``paper_ids``, ``paper_name``, ``origin_url``,
        ``hf_hub_id`` and ``url`` (empty when timm has no pretrained config for ``name``).
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    out: dict[str, Any] = {}
    if cfg is None:
        return out
    for key in _PROVENANCE_FIELDS:
        value = getattr(cfg, key, None)
        if value:
            out[key] = list(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def generate_entries(
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    *,
    provenance: bool = False,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Zoo entries for timm's pretrained models.

    Parameters
    ----------
    include, exclude : sequence of str
        fnmatch globs on ``arch.tag`` names (see :func:`list_pretrained_names`).
    provenance : bool
        Add a ``provenance`` block (licence, paper ids, origin and hub ids from timm's
        pretrained config). The sources do not accept it yet: only with the proposed
        ``filterdb.sources.load_model`` change; :func:`filterdb.zoo.timm_zoo.write_zoo` can also
        put it in comments.

    Returns
    -------
    entries : dict of str to dict
        Model id (the ``arch.tag`` name, which is a valid id) -> ``{source: timm, arch:
        NAME.TAG, pretrained: true, meta: {...}}``; meta passes
        :func:`filterdb.validate.entry_meta.validate_entry_meta`.
    unmapped : list of str
        Selected names whose tag the table cannot map (no entry written), with the reason:
        ``"arch.tag: reason"``.
    """
    entries: dict[str, dict[str, Any]] = {}
    unmapped: list[str] = []
    for name in list_pretrained_names(include, exclude):
        arch, tag = name.split(".", 1)
        mapping = map_tag(tag)
        if not mapping.mapped:
            unmapped.append(f"{name}: {mapping.reason}")
            continue
        meta = {
            "task": mapping.meta["task"],
            "visual_category": mapping.meta["visual_category"],
            "training_dataset": mapping.meta["training_dataset"],
            "pretraining_dataset": mapping.meta["pretraining_dataset"],
            "architecture": arch,
            "family": architecture_family(arch),
            "training": mapping.meta["training"],
        }
        entry: dict[str, Any] = {"source": "timm", "arch": name, "pretrained": True, "meta": meta}
        if provenance:
            entry["provenance"] = pretrained_provenance(name)
        entries[name] = entry
    return entries, unmapped


def weights_dir_overrides(
    entries: Mapping[str, Mapping[str, Any]], weights_dir: str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Point entries at local weight files ``DIR/arch.tag.safetensors`` (or ``.pth``) when present.

    An entry with such a file gets ``weights_file`` instead of ``pretrained: true``; the timm
    source feeds it through timm's pretrained-config overlay, exactly as a hub download.

    Parameters
    ----------
    entries : mapping
        From :func:`generate_entries`.
    weights_dir : path-like
        Folder of stand-in or pre-downloaded weights.

    Returns
    -------
    dict
        New entries (the input is not modified).
    """
    root = Path(weights_dir)
    out: dict[str, dict[str, Any]] = {}
    for model_id, entry in entries.items():
        entry = dict(entry)
        for suffix in (".safetensors", ".pth", ".bin"):
            path = root / f"{entry['arch']}{suffix}"
            if path.is_file():
                entry.pop("pretrained", None)
                entry["weights_file"] = str(path.resolve())
                break
        out[model_id] = entry
    return out


def filter_available(
    entries: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Split entries into those whose weights are on this machine and those that are not.

    An entry is available when it has a ``weights_file`` that exists, or ``pretrained: true`` and
    :func:`filterdb.sources.timm_source.local_pretrained_file` finds it in the local hub cache
    (no network). Random-init entries are always available.

    Parameters
    ----------
    entries : mapping
        Model id -> zoo entry.

    Returns
    -------
    kept : dict
        Available entries, in order.
    skipped : list of str
        Ids of the others (``--only-available`` writes them into the zoo file as a comment).
    """
    from filterdb.sources.timm_source import local_pretrained_file

    kept: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for model_id, entry in entries.items():
        if entry.get("weights_file") is not None:
            ok = Path(entry["weights_file"]).is_file()
        elif entry.get("pretrained"):
            ok = local_pretrained_file(entry["arch"]) is not None
        else:
            ok = True
        if ok:
            kept[model_id] = dict(entry)
        else:
            skipped.append(model_id)
    return kept, skipped
