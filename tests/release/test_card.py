"""The dataset card is generated from the manifest: its counts are the manifest's."""

from __future__ import annotations

import json
import re

from filterdb.release.card import LICENSE_NOTE, render_card
from tests.conftest import REPO


def _manifest() -> dict:
    m = json.loads((REPO / "releases" / "v0.1.0" / "manifest.json").read_text())
    by = m["counts"]["by"]
    by["license"] = {"MIT": {"models": 3, "filters": 100}, "none": {"models": 23, "filters": 7}}
    by["weight_precision"] = {"float32": {"models": 25, "filters": 105},
                              "float16": {"models": 1, "filters": 2}}
    return m


def _table_rows(card: str, heading: str) -> dict[str, tuple[int, int]]:
    block = card.split(f"### {heading}\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    rows = {}
    for line in block.splitlines()[2:]:
        value, models, filters = (c.strip() for c in line.strip("|").split("|"))
        rows[value] = (int(models), int(filters.replace(",", "")))
    return rows


def test_card_counts_equal_the_manifest() -> None:
    m = _manifest()
    card = render_card(m)
    c = m["counts"]
    assert f"{c['models']} convolutional networks" in card
    assert f"{c['filters']:,} 3x3 filters" in card
    for heading, key in (("Per licence", "license"), ("Per task", "task"),
                         ("Per visual category", "visual_category"),
                         ("Per weight precision", "weight_precision"), ("Per source", "source")):
        expect = {v: (d["models"], d["filters"]) for v, d in c["by"][key].items()}
        assert _table_rows(card, heading) == expect, heading
    assert LICENSE_NOTE in card
    assert re.search(r"float16 \(1 models\)", card)  # quantized/low precision is a limitation
    n_random = c["by"]["training"]["random-init"]["models"]
    assert f"of which {n_random} are random-init" in card
