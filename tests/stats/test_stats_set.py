"""`filterdb stats all` commits its three outputs as one set, even when killed mid-commit.

A child process writes a new set over an old one with the real writer
(:func:`filterdb.stats.write.write_stats`; ``write_stats_dask`` of filterdb/stats/distributed.py
shares its ``write_results``) and is killed with SIGKILL at a chosen ``os.replace``: between
two renames of the set, or just before its commit journal is renamed into place. The outputs lie
in two folders, as in the pipeline (``stats/`` and ``metrics/``). The test then does what the next
run does first (clean up the folder of one output) and checks the set is whole: all new, or all
old.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr
import yaml

from filterdb.atomic import remove_stale_temps, roll_forward
from filterdb.stats.write import write_stats
from tests.conftest import REPO, run_killed

CHILD = r"""
from filterdb.stats.write import write_stats

write_stats(a["src"], a["deg"], a["json"], a["shifts"], a["deg_params"], a["shift_params"])
"""
OLD = {"sparsity_divisor": 100.0, "bins": 70}
NEW = {"sparsity_divisor": 10.0, "bins": 35}  # every one of the three files differs


def _params(change: dict[str, float]) -> tuple[dict, dict]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    deg = {**params["degeneracy"], "sparsity_divisor": change["sparsity_divisor"]}
    shifts = {**params["shifts"], "population": "all", "bins": change["bins"]}
    return deg, shifts


def _outputs(root: Path) -> dict[str, Path]:
    return {
        "deg": root / "stats" / "degeneracy.nc",
        "shifts": root / "stats" / "shifts.nc",
        "json": root / "metrics" / "degeneracy.json",
    }


def _write(src: Path, root: Path, change: dict[str, float]) -> None:
    out = _outputs(root)
    write_stats(src, out["deg"], out["json"], out["shifts"], *_params(change))


def _content(path: Path) -> object:
    if path.suffix == ".json":
        return path.read_text()
    with xr.open_dataset(path) as ds:
        return ds.load()


def _same(a: object, b: object) -> bool:
    return a.identical(b) if isinstance(a, xr.Dataset) else a == b


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*"))


@pytest.fixture(scope="module")
def sets(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The contents of the old and the new set, each written without interruption."""
    out: dict[str, dict] = {}
    for name, change in (("old", OLD), ("new", NEW)):
        root = tmp_path_factory.mktemp(name)
        _write(tiny_dataset, root, change)
        out[name] = {k: _content(p) for k, p in _outputs(root).items()}
    for key in out["old"]:
        assert not _same(out["old"][key], out["new"][key]), key
    return out


def _killed_run(src: Path, root: Path, kill_on: list[object]) -> None:
    """Write the new set over the old one in a child killed with SIGKILL at ``kill_on``."""
    out = _outputs(root)
    deg, shifts = _params(NEW)
    args = {
        "src": str(src),
        **{k: str(p) for k, p in out.items()},
        "deg_params": deg,
        "shift_params": shifts,
        "kill_on": kill_on,
    }
    run_killed(CHILD, args, timeout=600)


def _state(root: Path, sets: dict[str, dict]) -> dict[str, str]:
    """Which set each output belongs to: 'old', 'new' or '?'."""
    state = {}
    for key, path in _outputs(root).items():
        got = _content(path)
        state[key] = next((s for s in ("old", "new") if _same(got, sets[s][key])), "?")
    return state


def test_killed_between_renames_the_next_run_completes_the_new_set(
    tiny_dataset: Path, tmp_path: Path, sets: dict[str, dict]
) -> None:
    """Killed after the journal was written and after the first of the three renames.

    The killed run leaves a mixed set (degeneracy.nc new, the others old) and a journal in both
    folders. The next atomic write into ``metrics/`` (the folder that is *not* the first
    output's) first settles the journal: all three outputs are then the new set, and no temp or
    journal is left.
    """
    _write(tiny_dataset, tmp_path, OLD)
    _killed_run(tiny_dataset, tmp_path, ["set", 2])

    assert _state(tmp_path, sets) == {"deg": "new", "shifts": "old", "json": "old"}
    journals = sorted(p.parent.name for p in tmp_path.rglob(".*.journal"))
    assert journals == ["metrics", "stats"]

    remove_stale_temps(_outputs(tmp_path)["json"])  # what any later write of it does first

    assert _state(tmp_path, sets) == {"deg": "new", "shifts": "new", "json": "new"}
    assert _hidden(tmp_path) == []


def test_killed_before_the_journal_the_old_set_stays(
    tiny_dataset: Path, tmp_path: Path, sets: dict[str, dict]
) -> None:
    """Killed with all three temps complete, as the journal was about to be renamed into place.

    Nothing was committed: the outputs stay the old set, and the next run's clean-up removes the
    three temps (and the journal's own temp) without renaming any.
    """
    _write(tiny_dataset, tmp_path, OLD)
    _killed_run(tiny_dataset, tmp_path, ["journal", 1])

    assert _state(tmp_path, sets) == {"deg": "old", "shifts": "old", "json": "old"}
    assert len([p for p in tmp_path.rglob(".*.tmp") if ".journal." not in p.name]) == 3
    assert list(tmp_path.rglob(".*.journal")) == []

    for path in _outputs(tmp_path).values():
        remove_stale_temps(path)
    assert roll_forward(tmp_path / "stats") == []

    assert _state(tmp_path, sets) == {"deg": "old", "shifts": "old", "json": "old"}
    assert _hidden(tmp_path) == []


def test_a_reader_after_the_kill_reads_the_whole_new_set(
    tiny_dataset: Path, tmp_path: Path, sets: dict[str, dict]
) -> None:
    """The report is the first to read the set after the kill (no write came before it): it
    completes the set, so its numbers come from one set (here the new one), not from a mix."""
    from filterdb.report.markdown import write_report

    _write(tiny_dataset, tmp_path, OLD)
    _killed_run(tiny_dataset, tmp_path, ["set", 2])
    assert _state(tmp_path, sets) == {"deg": "new", "shifts": "old", "json": "old"}

    out = _outputs(tmp_path)
    write_report(out["deg"], out["shifts"], tmp_path / "report" / "report.md")

    assert _state(tmp_path, sets) == {"deg": "new", "shifts": "new", "json": "new"}
    assert _hidden(tmp_path) == []
