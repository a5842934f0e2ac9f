"""Start-up of the command line: each command imports only what it uses.

Every check runs in a fresh interpreter and looks at ``sys.modules`` after the command, so an
import that a command does not need (torch, pandera, ...) fails the test whatever its cost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest_stats import make_dataset, simple_zoo, write_dataset

#: Not needed by ``info`` or the single-process ``stats`` commands. (``dask`` itself is imported
#: by xarray whenever it decodes a variable, so it cannot be kept out of a command that opens a
#: dataset; ``dask.distributed`` and the rest can.)
HEAVY = ("torch", "timm", "dvc", "matplotlib", "pandera", "sklearn", "scipy.stats")

PROBE = textwrap.dedent(
    """
    import json, sys
    from filterdb.cli import main
    loaded = sorted(sys.modules)
    code = main(sys.argv[1:]) if len(sys.argv) > 1 else 0
    print(json.dumps({"code": code, "at_import": loaded, "after": sorted(sys.modules)}))
    """
)


def _probe(args: list[str], cwd: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("startup")
    return write_dataset(make_dataset(simple_zoo(2, 2, 4)), folder / "tiny.nc")


def test_importing_the_cli_loads_no_array_library(tmp_path) -> None:
    mods = _probe([], tmp_path)["at_import"]
    assert _loaded(mods, ("numpy", "pandas", "xarray", "netCDF4", "dask", *HEAVY)) == []


def test_importing_the_cli_takes_well_under_a_third_of_a_second(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import filterdb.cli"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    last = [ln for ln in out.stderr.splitlines() if ln.rstrip().endswith("| filterdb.cli")]
    cumulative_us = int(last[-1].split("|")[1])
    assert cumulative_us < 150_000, out.stderr[-2000:]


def test_info_loads_neither_torch_nor_pandera(tiny) -> None:
    out = _probe(["info", str(tiny)], tiny.parent)
    assert out["code"] == 0
    assert _loaded(out["after"], (*HEAVY, "distributed")) == []


@pytest.mark.parametrize("which", ["degeneracy", "all"])
def test_single_process_stats_load_neither_torch_nor_pandera(tiny, which) -> None:
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    d = tiny.parent / which
    args = ["stats", which, "--input", str(tiny), "--params", str(params)]
    args += ["--degeneracy", str(d / "deg.nc"), "--metrics", str(d / "deg.json")]
    args += ["--shifts", str(d / "shifts.nc")]
    out = _probe(args, tiny.parent)
    assert out["code"] == 0
    assert (d / "deg.nc").is_file()
    assert _loaded(out["after"], HEAVY) == []


def test_import_filterdb_still_registers_the_accessor_when_xarray_comes_later(tiny) -> None:
    code = textwrap.dedent(
        f"""
        import sys, filterdb
        assert "xarray" not in sys.modules
        import xarray as xr
        with xr.open_dataset({str(tiny)!r}) as ds:
            print(len(ds.filterdb.models()), filterdb.open_dataset.__module__)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "filterdb.dataset.accessor"]
