"""A small but real release folder, built without DVC: for packaging and Croissant tests.

The dataset is the session's ``tiny_dataset`` (four real models); the statistics are computed
from it with the repository's params, so ``validate_release`` rechecks them for real. The report,
the replication table and the plots are small stand-ins: validation only checks their sha256.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from filterdb.release.publish import build_release
from filterdb.stats.write import write_stats

REPO = Path(__file__).resolve().parents[1]


def build_small_release(root: Path, filters_nc: Path, version: str = "0.0.1") -> Path:
    """Lay out ``root`` as the pipeline leaves it and run the release stage; return the folder.

    Parameters
    ----------
    root : Path
        An empty folder, not a git repository (the release is unpublished).
    filters_nc : Path
        The dataset to release.
    version : str
        The release version.
    """
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["release"] = {"version": version}
    (root / "data").mkdir(parents=True)
    (root / "stats").mkdir()
    (root / "plots").mkdir()
    shutil.copyfile(filters_nc, root / "data" / "filters.nc")
    write_stats(
        root / "data" / "filters.nc",
        root / "stats" / "degeneracy.nc",
        None,
        root / "stats" / "shifts.nc",
        params["degeneracy"],
        params["shifts"],
    )
    (root / "stats" / "report.md").write_text("# stand-in report\n")
    (root / "stats" / "replication.csv").write_text("statistic,value\nstand-in,0\n")
    (root / "plots" / "stand-in.csv").write_text("x,y\n0,0\n")
    shutil.copyfile(REPO / "CITATION.cff", root / "CITATION.cff")
    return build_release(version, params, root)
