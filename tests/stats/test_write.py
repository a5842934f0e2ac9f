"""Statistics outputs are written as one set: a failure while writing leaves the previous set."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr
import yaml

from filterdb.stats.write import write_stats
from tests.conftest import REPO


def _params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return {"degeneracy": params["degeneracy"], "shifts": {**params["shifts"], "population": "all"}}


def _outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "degeneracy.nc", tmp_path / "degeneracy.json", tmp_path / "shifts.nc"


def _write(tiny_dataset: Path, tmp_path: Path, divisor: float = 100.0) -> None:
    deg, js, sh = _outputs(tmp_path)
    p = _params()
    degeneracy = {**p["degeneracy"], "sparsity_divisor": divisor}
    write_stats(tiny_dataset, deg, js, sh, degeneracy, p["shifts"])


def test_a_failure_while_writing_leaves_the_previous_set_whole(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tiny_dataset, tmp_path)
    before = {p.name: p.read_bytes() for p in _outputs(tmp_path)}

    real = xr.Dataset.to_netcdf

    def fail_on_shifts(self: xr.Dataset, path: object = None, *args: object, **kw: object):
        if ".shifts.nc." in str(path):  # the temporary sibling of shifts.nc
            raise OSError(28, "No space left on device")
        return real(self, path, *args, **kw)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fail_on_shifts)
    (tmp_path / "degeneracy.nc").chmod(0o644)
    with pytest.raises(OSError, match="No space left"):
        _write(tiny_dataset, tmp_path, divisor=10.0)  # other degeneracy values than before
    # degeneracy.nc was written (to its temporary) before shifts.nc failed: nothing was renamed
    assert {p.name: p.read_bytes() for p in _outputs(tmp_path)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no temporaries left


def test_all_three_outputs_appear_together(tiny_dataset: Path, tmp_path: Path) -> None:
    _write(tiny_dataset, tmp_path)
    first = (tmp_path / "degeneracy.nc").read_bytes()
    _write(tiny_dataset, tmp_path, divisor=10.0)
    assert (tmp_path / "degeneracy.nc").read_bytes() != first  # the failure test's input differs
    assert all(p.is_file() for p in _outputs(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in _outputs(tmp_path))
