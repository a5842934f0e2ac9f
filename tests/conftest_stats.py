"""Small, contract-conforming synthetic datasets for the statistics tests and benchmarks.

Everything here writes the layout of ``docs/data-layout.md`` directly (xarray for small
in-memory datasets, netCDF4 in chunks for large files); nothing comes from the extraction code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from filterdb.dataset.contract import CATEGORICAL, DEPTH_METHODS, SCHEMA_VERSION

# A fixed, clearly anisotropic 9x9 mixing: filters z @ MIX have distinct PCA variances.
_MIX_RNG = np.random.default_rng(1234)
_Q, _ = np.linalg.qr(_MIX_RNG.normal(size=(9, 9)))
MIX = (np.diag(np.linspace(3.0, 0.4, 9)) @ _Q.T).astype(np.float64)


def gen_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """i.i.d. N(0, 1) filters."""
    return rng.standard_normal((n, 3, 3), dtype=np.float32)


def gen_structured(rng: np.random.Generator, n: int) -> np.ndarray:
    """Anisotropic, off-centre filters (a 'trained-like' layer with a clear PCA spectrum)."""
    z = rng.standard_normal((n, 9)) @ MIX + 0.3
    return z.reshape(n, 3, 3).astype(np.float32)


def gen_sparse(rng: np.random.Generator, n: int, share: float = 0.5) -> np.ndarray:
    """Structured filters of which ``share`` are exactly zero."""
    w = gen_structured(rng, n)
    w[rng.random(n) < share] = 0.0
    return w


def gen_lowrank(rng: np.random.Generator, n: int) -> np.ndarray:
    """Filters on two directions only (low variance entropy)."""
    basis = np.zeros((2, 9))
    basis[0, 4], basis[1, 1] = 1.0, 1.0
    return (rng.standard_normal((n, 2)) @ basis).reshape(n, 3, 3).astype(np.float32)


GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "normal": gen_normal,
    "structured": gen_structured,
    "sparse": gen_sparse,
    "lowrank": gen_lowrank,
    "zero": lambda rng, n: np.zeros((n, 3, 3), np.float32),
    "constant": lambda rng, n: np.broadcast_to(
        np.arange(9, dtype=np.float32).reshape(3, 3), (n, 3, 3)
    ).copy(),
}


@dataclass
class LayerSpec:
    """One conv layer: ``c_out`` x ``c_in`` with ``groups``, filled by a named generator."""

    c_out: int
    c_in: int
    groups: int = 1
    kind: str = "structured"
    #: BatchNorm fold scale per output channel (``None``: no BN follows, scale 1)
    scale: Sequence[float] | None = None

    @property
    def n(self) -> int:
        return self.c_out * (self.c_in // self.groups)


@dataclass
class ModelSpec:
    """One model with its categorical meta-parameters and layers (in depth order)."""

    model_id: str
    layers: list[LayerSpec]
    meta: dict[str, str] = field(default_factory=dict)


DEFAULT_META = {
    "task": "classification",
    "visual_category": "natural",
    "training_dataset": "cifar10",
    "pretraining_dataset": "none",
    "architecture": "resnet",
    "family": "resnet",
    "source": "trained",
    "training": "normal",
    "weight_precision": "float32",
    "bn_folded": "no",
    "license": "CC-BY-4.0",
}


def _codes(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    meanings = sorted(set(values))
    lookup = {v: i for i, v in enumerate(meanings)}
    return np.array([lookup[v] for v in values], np.int16), meanings


def make_dataset(
    models: Sequence[ModelSpec],
    seed: int = 0,
    weights: dict[int, np.ndarray] | None = None,
) -> xr.Dataset:
    """An in-memory dataset in the filterdb layout (``weights`` overrides layers by index)."""
    rng = np.random.default_rng(seed)
    layer_rows: list[dict] = []
    blocks: list[np.ndarray] = []
    scales: list[np.ndarray] = []
    first = 0
    model_first, model_count = [], []
    for mi, m in enumerate(models):
        model_first.append(len(layer_rows))
        model_count.append(len(m.layers))
        n_depths = len(m.layers)
        for di, lay in enumerate(m.layers):
            li = len(layer_rows)
            if weights is not None and li in weights:
                w = np.asarray(weights[li], np.float32).reshape(-1, 3, 3)
                assert w.shape[0] == lay.n, (li, w.shape, lay.n)
            else:
                w = GENERATORS[lay.kind](rng, lay.n)
            blocks.append(w)
            scale = np.ones(lay.c_out, np.float32) if lay.scale is None else lay.scale
            scales.append(np.asarray(scale, np.float32).reshape(lay.c_out))
            layer_rows.append(
                dict(
                    layer_model=mi,
                    layer_name=f"layer{di}.conv",
                    layer_first_filter=first,
                    layer_filter_count=lay.n,
                    conv_depth=di,
                    conv_depth_norm=di / (n_depths - 1) if n_depths > 1 else 0.0,
                    in_channels=lay.c_in,
                    out_channels=lay.c_out,
                    groups=lay.groups,
                    bn_follows=int(lay.scale is not None),
                )
            )
            first += lay.n
    weight = np.concatenate(blocks) if blocks else np.zeros((0, 3, 3), np.float32)
    filter_layer = np.repeat(
        np.arange(len(layer_rows), dtype=np.int32), [r["layer_filter_count"] for r in layer_rows]
    )

    def lcol(name: str, dtype: str) -> np.ndarray:
        return np.array([r[name] for r in layer_rows], dtype=dtype)

    n_layers = len(layer_rows)
    coords = {
        "model": ("model", np.array([m.model_id for m in models], dtype=object)),
        "filter_layer": ("filter", filter_layer),
        "layer_model": ("layer", lcol("layer_model", "int32")),
        "layer_name": ("layer", np.array([r["layer_name"] for r in layer_rows], dtype=object)),
        "layer_first_filter": (
            "layer",
            lcol("layer_first_filter", "int64"),
            {"sample_dimension": "filter"},
        ),
        "layer_filter_count": (
            "layer",
            lcol("layer_filter_count", "int64"),
            {"sample_dimension": "filter"},
        ),
        "conv_depth": ("layer", lcol("conv_depth", "int32")),
        "conv_depth_norm": ("layer", lcol("conv_depth_norm", "float64")),
        "in_channels": ("layer", lcol("in_channels", "int32")),
        "out_channels": ("layer", lcol("out_channels", "int32"), {"sample_dimension": "channel"}),
        "groups": ("layer", lcol("groups", "int32")),
    }
    out_channels = lcol("out_channels", "int64")
    coords["layer_first_channel"] = (
        "layer",
        np.concatenate([[0], np.cumsum(out_channels)[:-1]])[:n_layers].astype(np.int64),
    )
    coords["bn_follows"] = (
        "layer",
        lcol("bn_follows", "int8"),
        {"flag_values": np.arange(2, dtype=np.int8), "flag_meanings": "no yes"},
    )
    for name in ("stride_y", "stride_x", "dilation_y", "dilation_x"):
        coords[name] = ("layer", np.ones(n_layers, np.int32))
    coords["depth_method"] = (
        "layer",
        np.zeros(n_layers, np.int8),
        {
            "flag_values": np.arange(len(DEPTH_METHODS), dtype=np.int8),
            "flag_meanings": " ".join(DEPTH_METHODS),
        },
    )
    data: dict = {"weight": (("filter", "ky", "kx"), weight)}
    data["fold_scale"] = (
        "channel",
        np.concatenate(scales) if scales else np.zeros(0, np.float32),
    )
    for name in CATEGORICAL:
        codes, meanings = _codes([m.meta.get(name, DEFAULT_META[name]) for m in models])
        data[name] = (
            "model",
            codes,
            {
                "flag_values": np.arange(len(meanings), dtype=np.int16),
                "flag_meanings": " ".join(meanings),
            },
        )
    nf = np.array([sum(lay.n for lay in m.layers) for m in models], np.int64)
    data["weights"] = ("model", np.array(["random-init:seed=0"] * len(models), dtype=object))
    data["package"] = ("model", np.array(["none"] * len(models), dtype=object))
    data["upstream"] = ("model", np.array(["none"] * len(models), dtype=object))
    data["n_train_samples"] = ("model", np.full(len(models), np.nan))
    data["n_parameters"] = ("model", nf * 9)
    data["accuracy"] = ("model", np.full(len(models), np.nan))
    data["model_first_layer"] = ("model", np.array(model_first, np.int64))
    data["model_layer_count"] = ("model", np.array(model_count, np.int64))
    data["n_filters_3x3"] = ("model", nf)
    data["total_filters"] = ("model", nf)
    data["share_3x3"] = ("model", np.ones(len(models)))
    data["kernel_count"] = (("model", "kernel_shape"), nf[:, None])
    coords["kernel_shape"] = ("kernel_shape", np.array(["3x3"], dtype=object))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(
        Conventions="CF-1.10",
        title="synthetic filterdb test data",
        comment="float32, no BatchNorm folding",
        filterdb_schema_version=SCHEMA_VERSION,
    )
    return ds


def write_dataset(ds: xr.Dataset, path: Path, chunk: int = 65_536) -> Path:
    """Write ``ds`` as netCDF4 with ``weight`` chunked along ``filter``."""
    n = ds.sizes["filter"]
    enc = {"weight": {"chunksizes": (max(1, min(chunk, n)), 3, 3)}}
    ds.to_netcdf(path, encoding=enc)
    return path


def simple_zoo(n_models: int = 4, layers_per_model: int = 4, width: int = 16) -> list[ModelSpec]:
    """A few models over several meta-parameter values, with mixed layer kinds."""
    tasks = ["classification", "segmentation", "gan-generator"]
    fams = ["resnet", "vgg"]
    kinds = ["structured", "normal", "sparse", "lowrank"]
    out = []
    for m in range(n_models):
        layers = [
            LayerSpec(width * (1 + (i % 2)), width, 1, kinds[(m + i) % len(kinds)])
            for i in range(layers_per_model)
        ]
        meta = {
            "task": tasks[m % len(tasks)],
            "family": fams[m % len(fams)],
            "training": "random-init" if m % 3 == 2 else "normal",
        }
        out.append(ModelSpec(f"model{m}", layers, meta))
    return out


def write_large_synthetic(
    path: Path,
    n_filters: int,
    chunk: int = 65_536,
    layer_shape: tuple[int, int] = (256, 256),
    layers_per_model: int = 16,
    seed: int = 0,
) -> Path:
    """Write a large contract-conforming file in chunks (memory independent of ``n_filters``).

    Layers are ``layer_shape = (c_out, c_in)`` i.i.d. normal filters (the last layer is shorter
    so the total is exactly ``n_filters``: ``c_out`` is reduced and ``c_in`` made to fit).
    """
    per = layer_shape[0] * layer_shape[1]
    counts = [per] * (n_filters // per)
    rest = n_filters - per * len(counts)
    shapes = [layer_shape] * len(counts)
    if rest:
        counts.append(rest)
        shapes.append((rest, 1))
    n_layers = len(counts)
    n_models = max(1, -(-n_layers // layers_per_model))
    layer_model = np.arange(n_layers) // layers_per_model
    rng = np.random.default_rng(seed)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for dim, size in (("model", n_models), ("layer", n_layers), ("filter", n_filters)):
            nc.createDimension(dim, size)
        nc.createDimension("ky", 3)
        nc.createDimension("kx", 3)
        nc.createDimension("kernel_shape", 1)
        w = nc.createVariable(
            "weight", "f4", ("filter", "ky", "kx"), chunksizes=(min(chunk, n_filters), 3, 3)
        )
        w.coordinates = "filter_layer"
        fl = nc.createVariable(
            "filter_layer", "i4", ("filter",), chunksizes=(min(chunk, n_filters),)
        )
        v = nc.createVariable("model", str, ("model",))
        for i in range(n_models):
            v[i] = f"synth{i}"
        for name in CATEGORICAL:
            v = nc.createVariable(name, "i2", ("model",))
            if name in ("family", "task"):
                k = min(2, n_models)  # codes only for values present (the layout's rule)
                labels = ["a", "b"] if name == "family" else ["classification", "segmentation"]
                v.flag_values = np.arange(k, dtype=np.int16)
                v.flag_meanings = " ".join(labels[:k])
                v[:] = (np.arange(n_models) % k).astype(np.int16)
            else:
                v.flag_values = np.arange(1, dtype=np.int16)
                v.flag_meanings = DEFAULT_META[name]
                v[:] = np.zeros(n_models, np.int16)
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        depth = np.array([i % layers_per_model for i in range(n_layers)])
        lay = {
            "layer_model": ("i4", layer_model),
            "layer_first_filter": ("i8", firsts),
            "layer_filter_count": ("i8", np.asarray(counts, np.int64)),
            "conv_depth": ("i4", depth),
            "conv_depth_norm": ("f8", depth / max(layers_per_model - 1, 1)),
            "out_channels": ("i4", np.array([s[0] for s in shapes])),
            "in_channels": ("i4", np.array([s[1] for s in shapes])),
            "groups": ("i4", np.ones(n_layers)),
        }
        for name, (dt, vals) in lay.items():
            v = nc.createVariable(name, dt, ("layer",))
            v[:] = np.asarray(vals).astype(dt)
        v = nc.createVariable("layer_name", str, ("layer",))
        for i in range(n_layers):
            v[i] = f"conv{i}"
        nc.Conventions = "CF-1.10"
        nc.filterdb_schema_version = SCHEMA_VERSION
        for a in range(0, n_filters, chunk):
            b = min(a + chunk, n_filters)
            w[a:b] = rng.standard_normal((b - a, 3, 3), dtype=np.float32)
            fl[a:b] = (np.searchsorted(firsts, np.arange(a, b), side="right") - 1).astype(np.int32)
    return path


def synthetic_file(folder: Path, n: int) -> Path:
    """``folder/filters_N.nc`` with ``n`` synthetic filters, written once and then reused."""
    path = folder / f"filters_{n}.nc"
    if not path.exists():
        write_large_synthetic(path, n)
    return path
