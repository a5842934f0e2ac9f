"""params.yaml is read strictly: every malformed zoo is an error that names file and key."""

from __future__ import annotations

import pytest

from filterdb.params import ParamsError, load_params
from filterdb.validate.failures import SchemaValidationError
from filterdb.zoo.entries import zoo_entries
from tests.conftest import MNIST_ENTRY, REPO


def test_the_default_params_define_the_default_zoo() -> None:
    params = load_params(REPO / "params.yaml")
    entries = zoo_entries(params)
    assert sum(e["source"] == "package" for e in entries.values()) == 4
    families = {e["meta"]["family"] for e in entries.values() if e["source"] == "timm"}
    assert len(families) >= 8


def test_duplicate_model_ids_are_an_error(tmp_path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("zoo:\n  a: {source: timm, arch: resnet18}\n  a: {source: timm, arch: vgg11}\n")
    with pytest.raises(
        ParamsError, match=r"params.yaml: duplicate key 'a' at line 3 \(first at line 2\)"
    ):
        load_params(p)


def test_same_id_in_zoo_and_trained_is_an_error() -> None:
    with pytest.raises(ParamsError, match="duplicate model id 'a'"):
        zoo_entries({"zoo": {"a": MNIST_ENTRY}, "trained": {"a": {"arch": "resnet9"}}})


def test_unknown_top_level_key_is_an_error(tmp_path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("zoo: {}\nzooo: {}\n")
    with pytest.raises(ParamsError, match=r"unknown top-level key\(s\) \['zooo'\]"):
        load_params(p)


def test_unknown_meta_keys_and_values_outside_vocabularies_are_all_reported() -> None:
    entry = {**MNIST_ENTRY, "meta": {**MNIST_ENTRY["meta"], "colour": "red", "task": "clasify"}}
    with pytest.raises(SchemaValidationError) as err:
        zoo_entries({"zoo": {"m": entry}})
    report = str(err.value)
    assert "model 'm'" in report
    assert "colour" in report and "'red'" in report
    assert "task" in report and "'clasify'" in report


def test_bad_ids_and_missing_sources_are_errors() -> None:
    with pytest.raises(ParamsError, match="model id 'bad id'"):
        zoo_entries({"zoo": {"bad id": MNIST_ENTRY}})
    with pytest.raises(ParamsError, match=r"zoo\.m has no 'source'"):
        zoo_entries({"zoo": {"m": {"meta": {}}}})


def test_trained_entries_come_after_the_zoo_with_their_source_implied() -> None:
    trained = {"arch": "resnet9", "meta": MNIST_ENTRY["meta"]}
    entries = zoo_entries({"zoo": {"z": MNIST_ENTRY}, "trained": {"t": trained}})
    assert list(entries) == ["z", "t"]
    assert entries["t"]["source"] == "trained"


def test_an_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ParamsError, match="model id"):
        zoo_entries({"zoo": {"abc\n": MNIST_ENTRY}})


@pytest.mark.parametrize("section", ["zoo", "trained"])
def test_an_entry_without_meta_is_refused_at_the_params_check(section) -> None:
    entry = {k: v for k, v in MNIST_ENTRY.items() if k != "meta"}
    if section == "trained":
        entry = {"arch": "resnet9"}
    with pytest.raises(ParamsError, match=rf"params.yaml: {section}\.m has no 'meta'"):
        zoo_entries({section: {"m": entry}})


def test_a_meta_without_a_key_only_the_entry_can_state_is_refused() -> None:
    # without it the model would be labelled 'unknown' and fail validation after extraction
    meta = {k: v for k, v in MNIST_ENTRY["meta"].items() if k != "family"}
    with pytest.raises(ParamsError, match=r"zoo\.m\.meta lacks family"):
        zoo_entries({"zoo": {"m": {**MNIST_ENTRY, "meta": meta}}})
    with pytest.raises(ParamsError, match=r"zoo\.m\.meta must be a mapping.*'family'"):
        zoo_entries({"zoo": {"m": {**MNIST_ENTRY, "meta": "family"}}})


def test_extract_refuses_an_entry_without_meta_before_any_work(tmp_path, cli_env) -> None:
    import subprocess

    import yaml

    entry = {k: v for k, v in MNIST_ENTRY.items() if k != "meta"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"zoo": {"m": entry}}))
    r = subprocess.run(
        ["filterdb", "extract", "m"], cwd=tmp_path, env=cli_env, capture_output=True, text=True
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "zoo.m has no 'meta'" in r.stderr
    assert not list(tmp_path.rglob("*.nc"))


def test_entry_key_types_agree_with_the_training_config() -> None:
    # zoo.py cannot import the training code (it loads torch): its copy of the types must match
    import typing

    from filterdb.params import ENTRY_KEY_TYPES
    from filterdb.train.recipe import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    assert set(hints) <= set(ENTRY_KEY_TYPES)
    for name, hint in hints.items():
        assert ENTRY_KEY_TYPES[name] == hint, name
