"""A wrong-typed or misspelled value in params.yaml is one line naming the key and value, exit 2.

Each case writes the repository's params.yaml with one value spoiled and runs the command that
reads it, on a real (small, synthetic) dataset where one is needed: the error must come before
any work (no output file written) and never as a traceback.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, random_entry
from tests.conftest_stats import LayerSpec, ModelSpec, make_dataset, write_dataset


def _params(edit: dict[str, dict]) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["zoo"] = {"tiny": random_entry("resnet10t", "resnet")}
    params["trained"] = {}
    for section, values in edit.items():
        params[section] = {**(params.get(section) or {}), **values}
    return params


def _run(tmp_path: Path, env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["filterdb", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    ds = make_dataset([ModelSpec("a", [LayerSpec(4, 2), LayerSpec(8, 4)]),
                       ModelSpec("b", [LayerSpec(4, 4)])])
    return write_dataset(ds, tmp_path / "data" / "filters.nc")


CASES = {
    # name: (params edit, command, key, value)
    "zoo-seed": ({"zoo": {"tiny": {**random_entry("resnet10t", "resnet"), "seed": "zero"}}},
                 ["extract", "tiny"], "seed", "zero"),
    "store-chunk": ({"store": {"chunk_filters": "lots"}}, ["assemble"], "chunk_filters", "lots"),
    "degeneracy-divisor": ({"degeneracy": {"sparsity_divisor": "ten"}},
                           ["stats", "degeneracy"], "sparsity_divisor", "ten"),
    "degeneracy-typo": ({"degeneracy": {"sparsity_divsor": 100.0}},
                        ["stats", "degeneracy"], "sparsity_divsor", None),
    "shifts-bins": ({"shifts": {"bins": "seventy"}}, ["stats", "shifts"], "bins", "seventy"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_spoiled_param_is_one_line_naming_key_and_value(tmp_path, cli_env, dataset, case):
    edit, command, key, value = CASES[case]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(edit)))
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    r = _run(tmp_path, cli_env, command)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert key in r.stderr and (value is None or value in r.stderr), r.stderr
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before  # nothing written


def test_a_params_file_that_is_not_utf8_is_one_line(tmp_path, cli_env) -> None:
    text = yaml.safe_dump(_params({}))
    (tmp_path / "params.yaml").write_bytes(text.encode().replace(b"resnet10t", b"resnet\xff10t"))
    r = _run(tmp_path, cli_env, ["extract", "tiny"])
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "params.yaml" in r.stderr
