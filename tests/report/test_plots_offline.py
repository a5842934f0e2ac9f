"""`dvc plots show` renders every declared figure without network: the page template embeds
pinned builds of vega, vega-lite and vega-embed (filterdb/report/plots_template.py), checked in
headless Chromium with the network unavailable; dvc-render's default CDN page stays blank there."""

from __future__ import annotations

import configparser
import csv
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from dvc_render.html import PAGE_HTML
from dvc_render.vega import VegaRenderer
from PIL import Image

from filterdb.report.plots import DEPTH_CSV_COLUMNS
from filterdb.report.plots_template import (
    DEFAULT_OUT,
    PINS,
    PlotsTemplateError,
    build_template,
    load_libraries,
    render_template,
)
from tests.conftest import REPO, sh

#: Debian: apt-get install chromium-headless-shell (.ci/run installs it)
CHROMIUM = next(
    (b for b in ("chromium-headless-shell", "chromium", "chromium-browser") if shutil.which(b)),
    None,
)
#: no route out: every connection goes to a closed port, every host name fails to resolve
OFFLINE = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]
MIN_COLOURED = 200  # pixels a plot of the test's 40 points draws in colour, at least


def declared_plots() -> list:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]


def declared_files() -> set[str]:
    """Every file the top-level ``plots:`` section of dvc.yaml names."""
    files = set()
    for entry in declared_plots():
        if isinstance(entry, str):
            files.add(entry)
            continue
        ((name, props),) = entry.items()
        y = (props or {}).get("y")
        if isinstance(y, dict):
            files.update(y)
        else:
            files.add(name)
    return files


def configured_template() -> str:
    """``plots.html_template`` of the repository's .dvc/config (relative to .dvc/)."""
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    return config["plots"]["html_template"]


# --- what is declared and configured -------------------------------------------------------


def test_every_figure_the_plots_stage_writes_is_declared_in_dvc_yaml() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    axes = params["shifts"]["axes"]
    written = {"degeneracy_by_depth.csv", "degeneracy_by_depth.png", "pca_components.png",
               "sweep.png"}
    written |= {f"shift_{a}.png" for a in axes} | {f"coefficients_{a}.png" for a in axes}
    assert declared_files() == {f"plots/{name}" for name in written}


def test_dvc_config_names_the_template_make_packages_writes() -> None:
    assert DEFAULT_OUT.parent == Path(".dvc")
    assert configured_template() == DEFAULT_OUT.name
    assert "/.dvc/plots-offline.html" in (REPO / ".gitignore").read_text().splitlines()
    assert "dvc_plots/" in (REPO / ".gitignore").read_text().splitlines()


# --- the template ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def libraries():
    """The pinned libraries (``npm pack`` once into the archive cache, sha256-checked)."""
    return load_libraries()


def test_template_embeds_the_pinned_builds_and_loads_nothing_from_the_network(libraries) -> None:
    page = render_template(libraries)
    assert "{plot_divs}" in page
    assert "{scripts}" not in page  # dvc-render would put its CDN tags there
    sources = re.findall(r'<script src="([^"]*)"', page)
    assert len(sources) == 3
    assert all(src.startswith("data:text/javascript;") for src in sources)
    assert "<link" not in page
    assert [lib.spec.name for lib in libraries] == ["vega", "vega-lite", "vega-embed"]
    for lib in libraries:
        assert lib.integrity in page


def test_pins_have_the_major_versions_dvc_render_loads_from_its_cdn() -> None:
    cdn = dict(re.findall(r"npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS))
    assert set(cdn) == set(PINS)
    for name, version in cdn.items():
        assert PINS[name]["version"].split(".")[0] == version.split(".")[0], name


def test_a_pin_that_misnames_the_licence_is_refused(libraries) -> None:
    pins = {"vega": {**PINS["vega"], "license": "MIT"}}
    with pytest.raises(PlotsTemplateError, match=r"vega.*BSD-3-Clause"):
        load_libraries(pins, download=False)


def test_template_is_deterministic(tmp_path, libraries) -> None:
    a = build_template(tmp_path / "a.html", download=False)
    b = build_template(tmp_path / "b.html", download=False)
    assert a.read_bytes() == b.read_bytes()


# --- the page in headless Chromium, offline ---------------------------------------------------


def _number(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


class TopDivs(HTMLParser):
    """The outermost divs with an id of a page (dvc-render writes one per plot): whether a
    script in it calls vegaEmbed, and whether a rendered vega view (a ``marks`` canvas or svg
    of non-zero size) sits in it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, id if an outermost div)
        self.embeds: dict[str, bool] = {}
        self.marks: dict[str, bool] = {}
        self._in_script = False
        self.feed(html)
        self.close()

    def _top(self) -> str | None:
        return next((i for _, i in self.stack if i is not None), None)

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        top = self._top()
        if tag == "div" and top is None and a.get("id"):
            top = a["id"]
            self.stack.append((tag, top))
            self.embeds[top] = self.marks[top] = False
        else:
            self.stack.append((tag, None))
        self._in_script = tag == "script"
        drawn = "marks" in (a.get("class") or "").split() and all(
            _number(a.get(k)) > 0 for k in ("width", "height")
        )
        if tag in ("canvas", "svg") and drawn and top is not None:
            self.marks[top] = True

    def handle_endtag(self, tag) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
        self._in_script = False

    def handle_data(self, data) -> None:
        top = self._top()
        if self._in_script and top is not None and "vegaEmbed(" in data:
            self.embeds[top] = True


def chromium(page: Path, *args: str) -> str:
    r = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", *OFFLINE,
         "--virtual-time-budget=10000", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def coloured_pixels(png: Path) -> int:
    """Pixels of a screenshot that are not grey (the test's images are grey; vega's marks and
    legend symbols are coloured)."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((rgb.max(axis=2) - rgb.min(axis=2) > 60).sum())


def render(page: Path, tmp: Path) -> dict[str, tuple[bool, int]]:
    """Each vega plot of a ``dvc plots show`` page opened offline: (a vega view with a sized
    canvas sits in its div, coloured pixels of a screenshot of the page showing only it)."""
    html = page.read_text()
    vega = [i for i, embeds in TopDivs(html).embeds.items() if embeds]
    dom = TopDivs(chromium(page, "--dump-dom"))
    out = {}
    for n, div in enumerate(vega):
        alone = page.with_name(f"only-{n}.html")  # same page, every other plot hidden
        hide = f'<style>body > div:not([id="{div}"]) {{ display: none; }}</style></head>'
        alone.write_text(html.replace("</head>", hide, 1))
        shot = tmp / f"{page.parent.name}-{n}.png"
        chromium(alone, f"--screenshot={shot}", "--window-size=800,600")
        out[div] = (dom.marks.get(div, False), coloured_pixels(shot))
    return out


def grey_png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (60, 80), dtype=np.uint8), mode="L").save(path)


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory, cli_env_module, libraries) -> Path:
    """A git + DVC repository with this repository's ``plots:`` section and .dvc/config's
    template, and data in the shape the plots stage writes (grey images, a depth table)."""
    env = cli_env_module
    root = tmp_path_factory.mktemp("plots-repo")
    sh(["git", "init", "-q"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["dvc", "config", "core.analytics", "false"], root, env)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": declared_plots()}, sort_keys=False))
    rng = np.random.default_rng(0)
    for i, name in enumerate(sorted(declared_files())):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".png":
            grey_png(path, i)
            continue
        assert path.suffix == ".csv", name
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(DEPTH_CSV_COLUMNS)
            for layer in range(40):
                w.writerow([f"m{layer % 4}", "resnet", f"conv{layer}", layer / 39,
                            *rng.uniform(0, 1, 4).round(4), 64, layer % 3 == 0])
    return root


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install "
                    "chromium-headless-shell)")
def test_dvc_plots_show_renders_every_vega_plot_offline(plots_repo, cli_env_module, tmp_path):
    env = cli_env_module
    build_template(plots_repo / ".dvc" / configured_template(), download=False)
    sh(["dvc", "config", "plots.html_template", configured_template()], plots_repo, env)
    sh(["dvc", "plots", "show", "-o", "offline"], plots_repo, env)
    n_vega = sum(isinstance(p, dict) for p in declared_plots())

    plots = render(plots_repo / "offline" / "index.html", tmp_path)

    assert n_vega >= 3 and len(plots) == n_vega
    for div, (drawn, coloured) in plots.items():
        assert drawn and coloured >= MIN_COLOURED, (div, drawn, coloured)
    images = sorted(p.name for p in (plots_repo / "offline" / "static").iterdir())
    assert len(images) == sum(isinstance(p, str) for p in declared_plots())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install "
                    "chromium-headless-shell)")
def test_the_default_cdn_page_is_blank_offline(plots_repo, cli_env_module, tmp_path):
    """The check above can fail: dvc-render's own template loads vega from a CDN."""
    env = cli_env_module
    default = tmp_path / "default.html"  # dvc-render's own page, {scripts} and all
    default.write_text(PAGE_HTML)
    page = plots_repo / "cdn" / "index.html"
    sh(["dvc", "plots", "show", "-o", "cdn", "--html-template", str(default)], plots_repo, env)
    assert "cdn.jsdelivr.net/npm/vega@5" in page.read_text()
    n_vega = sum(isinstance(p, dict) for p in declared_plots())

    plots = render(page, tmp_path)

    assert len(plots) == n_vega
    assert all(not drawn and coloured == 0 for drawn, coloured in plots.values()), plots
