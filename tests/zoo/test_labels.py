"""filterdb.zoo.labels: the one label table of the timm zoo and import-upstream."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from filterdb.validate.schema_files import load_vocabularies
from filterdb.zoo.labels import (
    ALIAS_COLUMNS,
    LABELS_FILE,
    SOURCES,
    label_aliases,
    load_label_table,
    match_family,
    none_labels,
    normalise_label,
)

#: alias column -> the vocabularies its values must be in
ALIAS_VOCABULARIES = {
    "task": ("task",),
    "visual_category": ("visual_category",),
    "dataset": ("training_dataset", "pretraining_dataset"),
    "training": ("training",),
}


def test_the_table_is_package_data() -> None:
    assert resources.files("filterdb.zoo").joinpath(LABELS_FILE).is_file()
    sections = {"version", "family_patterns", "family_modules", "aliases", "none_labels"}
    assert set(load_label_table()) == {*sections, "timm_tags"}


def test_family_rows_compile_and_name_vocabulary_families() -> None:
    families = set(load_vocabularies()["family"])
    for row in load_label_table()["family_patterns"]:
        pattern, family, *only = row
        re.compile(pattern)
        assert family in families, row
        assert len(only) <= 1 and set(only) <= set(SOURCES), row


@pytest.mark.parametrize("column", ALIAS_COLUMNS)
def test_aliases_are_normalised_and_map_to_vocabulary_values(column: str) -> None:
    vocab = load_vocabularies()
    aliases = label_aliases(column)
    assert aliases
    for key, value in aliases.items():
        assert normalise_label(key) == key, key  # otherwise no label could reach it
        for name in ALIAS_VOCABULARIES[column]:
            assert value in vocab[name], (column, key, value)
    assert set(ALIAS_COLUMNS) == set(load_label_table()["aliases"])


def test_none_labels_are_normalised() -> None:
    assert all(normalise_label(x) in (x, None) for x in none_labels())


@pytest.mark.parametrize(
    ("candidates", "source", "family"),
    [
        # rows both sources use
        (("resnet50",), "timm", "resnet"),
        (("ResNet-50",), "upstream", "resnet"),
        (("convnext_tiny",), "timm", "convnext"),
        (("hrnet_w18",), "timm", "hrnet"),
        (("WRN-28-10",), "upstream", "resnet"),
        # rows of one source: each keeps that source's result
        (("densenet121",), "timm", "densenet"),
        (("nf_regnet_b0",), "timm", "nfnet"),
        (("cspresnext50",), "timm", "cspnet"),
        (("inception_resnet_v2",), "timm", "inception"),
        (("SE-ResNet-50",), "upstream", "senet"),
        (("RegNetY-400MF",), "upstream", "regnet"),
        (("NFNet-F0",), "upstream", None),
        # fixed in v0.4.0: upstream once mapped these to senet and resnet
        (("DenseNet-121",), "upstream", "densenet"),
        (("Inception-ResNet-v2",), "upstream", "inception"),
        (("SENet-154",), "upstream", "senet"),
        # upstream tries Backbone, Network, Name, model in turn
        ((None, "Custom Net", "VGG-16-ish"), "upstream", "vgg"),
    ],
)
def test_match_family(candidates: tuple, source: str, family: str | None) -> None:
    assert match_family(*candidates, source=source) == family


def test_unknown_columns_and_sources_are_refused() -> None:
    with pytest.raises(ValueError, match="column must be one of"):
        label_aliases("family")
    with pytest.raises(ValueError, match="source must be one of"):
        match_family("resnet50", source="keras")
