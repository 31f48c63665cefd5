"""The user surface: :class:`Lakehouse` and the objects it returns (layer 5)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .assets import REGISTRY, AssetSpec, TableRef, collect
from .config import Settings
from .errors import (
    CatalogError,
    ConfigError,
    LakehouseError,
    MaterializeError,
    PartitionError,
    UnknownAssetError,
)
from .execution.result import RunResult, fresh_row
from .graph import AssetGraph
from .sources import uses_sources

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .catalog import StateRow
    from .catalog.sql import SqlCatalog
    from .partitions import RangeSet
    from .plan import Plan


@dataclass
class TableInfo:
    """Where an asset's table is: format, URI and current version."""

    asset: str
    format: str
    uri: str
    version: str | None

    def __repr__(self) -> str:
        return (
            f"TableInfo({self.asset!r}, format={self.format!r}, uri={self.uri!r}, "
            f"version={self.version!r})"
        )


@dataclass
class Lineage:
    """The graph around one asset.

    Attributes:
        asset: the asset.
        upstream: every transitive upstream, topological order.
        downstream: every transitive downstream, topological order.
        parents: direct upstreams.
        children: direct downstreams.
    """

    asset: str
    upstream: list[str]
    downstream: list[str]
    parents: list[str]
    children: list[str]
    _edges: list[tuple[str, str]]
    _lake: Lakehouse | None = field(default=None, repr=False)

    @property
    def edges(self) -> pl.DataFrame:
        """``upstream, downstream`` for every edge among the asset and its relatives."""
        import polars as pl

        return pl.DataFrame(
            self._edges, schema={"upstream": pl.String, "downstream": pl.String}, orient="row"
        )

    @property
    def columns(self) -> pl.DataFrame:
        """Column-level lineage of the asset: ``column, source_asset, source_column, kind``."""
        import polars as pl

        rows: list[dict[str, Any]] = []
        if self._lake is not None:
            rows = self._lake._column_lineage_rows(self.asset)
        schema = {
            "column": pl.String,
            "source_asset": pl.String,
            "source_column": pl.String,
            "kind": pl.String,
        }
        return pl.DataFrame(rows, schema=schema)

    def _repr_html_(self) -> str:
        from .notebook import lineage_html

        return lineage_html(self)


class Lakehouse:
    """A warehouse of asset tables plus the catalog that knows their history.

    Args:
        warehouse: local path, ``file://`` or object-store URI (``s3://bucket/prefix``).
        assets: functions, modules, or a mapping such as ``globals()``; ``None`` uses
            every asset registered with ``@lh.asset`` in this process (re-read at each call,
            so redefining a notebook cell replaces the asset).
        catalog: SQLAlchemy URL of the catalog (default: SQLite file next to the warehouse).
        format: default table format (``"delta"`` or ``"iceberg"``).
        storage_options: credentials/endpoint for object storage.
        executor: ``"serial"`` (default), ``"threads"`` or an executor object
            (``lh.DaskExecutor(...)``).
        max_workers: parallelism for ``executor="threads"``.
        settings: a complete :class:`~lakehouse.config.Settings` instead of the above.
        **options: further settings (see :class:`~lakehouse.config.Settings`).

    >>> import tempfile, lakehouse as lh
    >>> lake = lh.Lakehouse(tempfile.mkdtemp(), assets=[])
    >>> lake.plan().height
    0
    """

    def __init__(
        self,
        warehouse: str | None = None,
        *,
        assets: Any = None,
        catalog: str | None = None,
        format: str | None = None,
        storage_options: Mapping[str, str] | None = None,
        executor: Any = None,
        max_workers: int | None = None,
        settings: Settings | None = None,
        **options: Any,
    ) -> None:
        exec_name = executor if isinstance(executor, str) or executor is None else None
        self._executor_obj = None if exec_name is not None or executor is None else executor
        if settings is None:
            settings = Settings.resolve(
                warehouse=str(warehouse) if warehouse is not None else None,
                catalog=catalog,
                format=format,
                storage_options=dict(storage_options)
                if isinstance(storage_options, Mapping)
                else storage_options,
                executor=exec_name,
                max_workers=max_workers,
                **options,
            )
        self.settings = settings
        self._explicit = None if assets is None else collect(assets)
        self._graph_cache: tuple[tuple[int, ...], AssetGraph] | None = None
        self._catalog: SqlCatalog | None = None
        self._extensions: list[Any] = [_check_failed, _sources]
        #: The clock freshness (``max_age``) and observations are measured with: seconds
        #: since the epoch. Replace it to test freshness without waiting.
        self.clock: Callable[[], float] = time.time
        # Open (and migrate) the catalog now: a wrong catalog URL or an unwritable folder
        # fails where the lakehouse is created, and materialize() pays only for its work.
        _ = self.catalog

    # -- plumbing -----------------------------------------------------------------------

    @property
    def catalog(self) -> SqlCatalog:
        """The catalog (opened by the constructor, again after :meth:`close`; migrations
        applied)."""
        if self._catalog is None:
            from .catalog.sql import SqlCatalog

            if self.settings.catalog is None:
                try:
                    self.settings.state_dir.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CatalogError(
                        f"cannot create the catalog folder {self.settings.state_dir}: "
                        f"{exc.strerror or exc}",
                        hint="set local_dir= (or LAKEHOUSE_LOCAL_DIR) to a writable folder, "
                        "or catalog= to a "
                        "database URL",
                    ) from None
            self._catalog = SqlCatalog(self.settings.catalog_url)
        return self._catalog

    def close(self) -> None:
        """Release the catalog connection."""
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Lakehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def graph(self) -> AssetGraph:
        """The validated asset graph (rebuilt when definitions change)."""
        specs = self._explicit if self._explicit is not None else list(REGISTRY.values())
        sig = tuple(id(s) for s in specs)
        if self._graph_cache is None or self._graph_cache[0] != sig:
            self._graph_cache = (sig, AssetGraph(specs))
        return self._graph_cache[1]

    def _spec(self, name: str) -> AssetSpec:
        return self.graph.specs[self.graph.key_of(name)]

    def format_of(self, spec: AssetSpec) -> str:
        return spec.format or self.settings.format

    def table_ref(self, spec: AssetSpec, version: str | None = None) -> TableRef:
        """Where ``spec``'s table lives."""
        from .storage.uri import delta_options

        return TableRef(
            asset=spec.key,
            format=self.format_of(spec),
            uri=f"{self.settings.warehouse_uri}/{spec.key}",
            version=version,
            storage_options=delta_options(
                self.settings.warehouse_uri, self.settings.storage_options
            ),
            catalog=self._iceberg_props() if self.format_of(spec) == "iceberg" else {},
            namespace=spec.namespace,
            partitions=spec.partitions,
        )

    def _iceberg_props(self) -> dict[str, str]:
        """pyiceberg catalog properties: ``iceberg_catalog`` or the SQL catalog in the
        lakehouse catalog's database, plus FileIO credentials from ``storage_options``."""
        from .storage.iceberg import LOCATION_PROP
        from .storage.uri import iceberg_properties

        props = dict(self.settings.iceberg_catalog)
        if not props:
            props = {
                "type": "sql",
                "uri": self.settings.catalog_url,
                "warehouse": _as_uri(self.settings.warehouse_uri),
                LOCATION_PROP: "warehouse",
            }
        return {
            **iceberg_properties(self.settings.warehouse_uri, self.settings.storage_options),
            **props,
        }

    def code_versions(self) -> dict[str, str]:
        """The current code version of every asset."""
        from .fingerprint import code_versions

        specs = self.graph.specs
        computed = code_versions(
            s.fn for s in specs.values() if s.code_version is None and s.fn is not None
        )
        return {
            key: spec.code_version or (computed[spec.fn] if spec.fn is not None else "source")
            for key, spec in specs.items()
        }

    def _targets(self, keys: Sequence[str], partitions: Any) -> dict[str, RangeSet]:
        from .plan import universe

        now = _utcnow()
        targets: dict[str, RangeSet] = {}
        if partitions is None:
            return targets
        matched = False
        errors: list[PartitionError] = []
        for key in keys:
            spec = self.graph.specs[key]
            if spec.partitions is None:
                continue
            try:
                targets[key] = _parse_partitions(spec, partitions, now)
                matched = True
            except PartitionError as exc:
                errors.append(exc)
                targets[key] = universe(spec, now).__class__()
        if not matched and errors:
            raise errors[0]
        if not matched and not any(self.graph.specs[k].partitions for k in keys):
            raise PartitionError(
                f"partitions={partitions!r} given, but no selected asset is partitioned",
                hint="drop partitions=, or select a partitioned asset",
            )
        return targets

    def _extra_reasons(
        self, state: Mapping[str, Sequence[StateRow]]
    ) -> dict[str, list[tuple[Any, str, str | None]]]:
        extra: dict[str, list[tuple[Any, str, str | None]]] = {}
        for ext in self._extensions:
            for key, items in ext(self, state).items():
                extra.setdefault(key, []).extend(items)
        return extra

    def _plan(
        self, select: Any, partitions: Any, force: bool
    ) -> tuple[Plan, dict[str, list[StateRow]], dict[str, str]]:
        from .plan import build_plan

        graph = self.graph
        keys = graph.select(select)
        if self._explicit is None:
            from .checks import validate_targets

            validate_targets(graph.specs)
        self._recover()
        state = self.catalog.state()
        cvs = self.code_versions()
        targets = self._targets(keys, partitions)
        plan = build_plan(
            graph, state, cvs, keys, targets, force=force, extra=self._extra_reasons(state)
        )
        return plan, state, cvs

    def _recover(self) -> None:
        """Adopt table commits of crashed runs into the catalog (see ``recovery``)."""
        from .execution.recovery import recover_unfinished

        recover_unfinished(self)
        if any(
            s.previous_names for s in self.graph.specs.values()
        ):  # renamed assets adopt their history
            from .maintenance import adopt_renamed

            adopt_renamed(self)

    # -- planning and status ----------------------------------------------------------

    def plan(
        self,
        select: str | Sequence[str] | None = None,
        *,
        partitions: Any = None,
        force: bool = False,
    ) -> pl.DataFrame:
        """Exactly what :meth:`materialize` would run, and why.

        Returns:
            A DataFrame ``asset, partitions, count, reason, cause``: one row per asset and
            range with one reason (``never_materialized``, ``partition_missing``,
            ``code_changed``, ``upstream_changed``, ``upstream_stale`` ...).
        """
        plan, _, _ = self._plan(select, partitions, force)
        return plan.to_frame()

    def status(self, name: str | None = None, *, expand: bool = False) -> pl.DataFrame:
        """Every asset (or one asset's partition ranges): fresh or stale, and why.

        Without ``name``: one row per asset ``asset, stale, reason, cause, version, rows,
        materialized_at, code_version, partitions``. With ``name`` of a partitioned asset:
        one row per maximal range of partitions in the same state (``expand=True``: one
        row per partition).
        """
        from .views import asset_status

        return asset_status(self, name, expand=expand)

    def observe(
        self, select: str | Sequence[str] | None = None, *, raise_on_error: bool = True
    ) -> pl.DataFrame:
        """Observe sources and record the versions that changed (see :mod:`lakehouse.sources`).

        A changed version makes the assets that read the source stale with reason
        ``source_changed``. ``materialize()`` does this first for the sources it reads.

        Args:
            select: sources to observe, or assets whose direct source upstreams to observe
                (default: every source).
            raise_on_error: raise :class:`~lakehouse.errors.StorageError` when a source
                cannot be observed (after recording the others).

        Returns:
            ``source, partitions, version, previous, changed, observed_at, error``: one row
            per changed partition, or one per source that did not change or failed.
        """
        from .execution.sources import observe

        return observe(self, select, raise_on_error=raise_on_error)

    # -- running ------------------------------------------------------------------------

    def materialize(
        self,
        select: str | Sequence[str] | None = None,
        *,
        partitions: Any = None,
        force: bool = False,
        raise_on_error: bool = True,
        progress: bool | None = None,
    ) -> RunResult:
        """Compute what is stale in the selection, in dependency order.

        Args:
            select: a name, a list, ``"name+"`` (with downstream), ``"+name"`` (with upstream).
            partitions: ``"2013-01-01..2013-01-31"``, a key, a list of keys, or ``"all"``.
            force: run every selected asset/partition, stale or not.
            raise_on_error: raise :class:`MaterializeError` at the end if an asset failed.
            progress: show a progress bar (default: on a TTY for runs longer than ~1 s).

        Returns:
            A :class:`RunResult`; a failing asset stops its downstream, independent
            assets still complete and commit.
        """
        from .execution.coordinator import run_plan

        t0 = time.perf_counter()
        if uses_sources(self.graph):
            from .execution.sources import observe_for_run

            observe_for_run(self, select)  # the sources it reads: their current versions first
        plan, state, cvs = self._plan(select, partitions, force)
        run_id = _new_run_id()
        keys = self.graph.select(select)
        if not plan:
            result = RunResult(run_id, [fresh_row(k) for k in keys], time.perf_counter() - t0)
            return result
        result = run_plan(self, plan, state, cvs, run_id, keys, progress=progress)
        result.seconds = time.perf_counter() - t0
        if raise_on_error and not result.ok:
            failures = result.failures
            lines = "\n".join(f"  - {a}: {e}" for a, e in failures.items())
            raise MaterializeError(
                f"{len(failures)} asset(s) failed in run {run_id}:\n{lines}",
                result=result,
                failures=failures,
            )
        return result

    # -- reading ------------------------------------------------------------------------

    def table(self, name: str) -> TableInfo:
        """Format, URI and current version of an asset's table."""
        from .storage import get_format

        spec = self._spec(name)
        ref = self.table_ref(spec)
        cur = get_format(ref.format).current(ref)
        return TableInfo(spec.key, ref.format, ref.uri, cur[0] if cur else None)

    def scan(self, name: str, *, version: str | int | None = None) -> pl.LazyFrame:
        """A lazy Polars scan of an asset's table (current version or ``version``); for a
        source, of the data as of its newest observation."""
        from .engines import InputSource
        from .engines.polars import scan
        from .storage import get_format

        try:
            spec = self._spec(name)
        except UnknownAssetError:  # an orphaned asset (removed from the code): its recorded table
            from .maintenance import orphan_ref

            ref = orphan_ref(self, name, version)
        else:
            if spec.kind == "source" and version is None:  # as of its newest observation
                from .execution.sources import scan_source

                return scan_source(self, spec)  # type: ignore[no-any-return]
            ref = self.table_ref(spec, None if version is None else str(version))
        fmt = get_format(ref.format)
        if not fmt.exists(ref):
            raise UnknownAssetError(
                "has no table yet", asset=ref.asset, hint=f"run lake.materialize({ref.asset!r})"
            )
        native = getattr(fmt, "native", None)
        return scan(
            InputSource(
                ref.asset,
                ref,
                None,
                dataset=lambda: fmt.dataset(ref),
                table=(lambda: native(ref)) if native is not None else None,
            )
        )

    def read(self, name: str, *, version: str | int | None = None) -> pl.DataFrame:
        """An asset's table as a Polars DataFrame; ``version`` time-travels."""
        return self.scan(name, version=version).collect()

    # -- lineage --------------------------------------------------------------------------

    def lineage(self, name: str) -> Lineage:
        """Upstream/downstream assets of ``name`` and the edges among them."""
        g = self.graph
        key = g.key_of(name)
        up = g.ancestors(key)
        down = g.descendants(key)
        members = set(up) | set(down) | {key}
        edges = [(u, d) for (u, d) in g.edges() if u in members and d in members]
        return Lineage(key, up, down, list(g.parents[key]), list(g.children[key]), edges, self)

    def provenance(
        self, name: str, version: str | int | None = None, depth: int | None = None
    ) -> pl.DataFrame:
        """The full tree of materializations behind one version of an asset (default: current).

        Built from the catalog's records only, so it survives later rewrites of the
        upstream tables and changes to the definitions (a removed asset can still be
        asked about). A version of a partitioned table is made of every materialization
        still live in it; upstream, only the partitions each materialization consumed count.

        Args:
            name: the asset.
            version: a table version (Delta version, Iceberg snapshot id); default current.
            depth: how many levels of upstream materializations to include (0: only the
                asset's own); default all.

        Returns:
            ``asset, version, partitions, input, input_version, run_id, code_version,
            materialized_at, depth``: one row per input of every materialization in the
            tree (``input`` is null for a materialization that read no asset).
        """
        from .lineage import provenance_frame

        return provenance_frame(self, name, None if version is None else str(version), depth)

    def impact(self, name: str, version: str | int | None = None) -> pl.DataFrame:
        """Every downstream materialization that consumed a version of an asset, transitively.

        What must be recomputed or deleted if that version was wrong. A consumer counts when
        it read the asset at that version or later while rows of that version were still
        in the partitions it read.

        Args:
            name: the asset.
            version: the suspect table version; default the current one.

        Returns:
            ``asset, partitions, version, input, input_version, run_id, code_version,
            materialized_at, current, depth``: ``current`` says whether the consumer's
            rows are still in its table (then recompute it); ``depth`` 1 is a direct consumer.
        """
        from .lineage import impact_frame

        return impact_frame(self, name, None if version is None else str(version))

    def column_lineage(
        self, ref: str, direction: str = "upstream", *, indirect: bool = True
    ) -> pl.DataFrame:
        """Follow one column through the whole graph.

        Args:
            ref: ``"asset.column"``.
            direction: ``"upstream"`` (where it comes from) or ``"downstream"`` (what
                is derived from it).
            indirect: include filter/join keys (edges with a null ``column``: they decide
                which rows exist rather than a value).

        Returns:
            ``asset, column, source_asset, source_column, kind, depth``: one row per edge
            (``kind`` is ``identity``, ``transformed``, ``aggregated``, ``filter/join key``
            or ``unknown``); depth 1 is the asset itself (upstream) or its direct consumers.
        """
        from .lineage import column_lineage_frame

        return column_lineage_frame(self, ref, direction, indirect=indirect)

    def rebuild_catalog(self) -> dict[str, int]:
        """Reconstruct runs, materializations, partition state and provenance from the
        tables' commit metadata alone (after the catalog was lost or damaged).

        Every table commit made by lakehouse carries its provenance; the catalog's records
        of this lakehouse's assets are replaced by what the commits say. Check history and
        failed runs are not in the commits and are not restored.

        Returns:
            ``{"runs": n, "materializations": m}`` rebuilt.
        """
        from .execution.recovery import rebuild_catalog

        return rebuild_catalog(self)

    def checks(self, name: str | None = None) -> pl.DataFrame:
        """The history of data-quality checks of an asset (or of all), newest first.

        Returns:
            ``run_id, asset, partitions, check, severity, passed, failing_rows, detail,
            sample, checked_at``: one row per check per partition range per run.
        """
        from .execution.audit import checks_frame

        return checks_frame(self, None if name is None else self._spec(name).key)

    def history(self, name: str) -> pl.DataFrame:
        """Every materialization of an asset, newest first."""
        from .lineage import recorded_key
        from .views import history_frame

        return history_frame(self, recorded_key(self, name))

    # -- maintenance and lifecycle ---------------------------------------------------------

    def optimize(
        self,
        select: str | Sequence[str] | None = None,
        *,
        zorder: str | Sequence[str] | None = None,
        partitions: Any = None,
        relayout: bool = True,
        dry_run: bool = False,
    ) -> pl.DataFrame:
        """Compact small files into large ones, per partition; table content and staleness
        stay as they are (see the maintenance guide).

        Delta: ``optimize.compact`` (``z_order`` with ``zorder=``). Iceberg: the data files
        of each partition are rewritten in one snapshot (sorted by ``zorder`` columns).
        Tiny time partitions (less than 8 MB on average, whole table) are regrouped:
        Iceberg evolves hour/day partitions to day/month; a Delta table Hive-partitioned by
        a time-partitioned asset's column is rewritten without Hive partitions, rows
        sorted by that column.

        Args:
            select: assets (default: every asset with a table, orphaned ones included).
            zorder: column(s) to cluster the rewritten files by.
            partitions: only these partitions (e.g. ``"2024-01-01..2024-01-31"``).
            relayout: regroup tiny time partitions as above; ``False`` keeps every
                table's partitioning and only compacts within partitions.
            dry_run: report what would be done, change nothing.

        Returns:
            ``asset, format, files_before, files_after, version_before, version_after,
            action, detail``: one row per asset.
        """
        from .maintenance import optimize

        return optimize(
            self, select, zorder=zorder, partitions=partitions, relayout=relayout, dry_run=dry_run
        )

    def vacuum(
        self,
        select: str | Sequence[str] | None = None,
        retain: str | float = "7d",
        dry_run: bool = False,
    ) -> pl.DataFrame:
        """Delete files (and Iceberg snapshots) older than ``retain`` that no needed version uses.

        Never removes what the current version, a version the partition state reads, a
        pinned version (:meth:`pin`) or a version younger than ``retain`` needs.

        Args:
            select: assets (default: every asset with a table, orphaned ones included).
            retain: time travel to keep: ``"7d"``, ``"12h"``, ``"0s"`` or seconds.
            dry_run: report what would be removed, remove nothing.

        Returns:
            ``asset, format, files_removed, bytes_removed, kept_versions, action, detail``.
        """
        from .maintenance import vacuum

        return vacuum(self, select, retain=retain, dry_run=dry_run)

    def pin(self, name: str, version: str | int | None = None, reason: str | None = None) -> str:
        """Keep ``version`` (default: the current one) of an asset's table through
        :meth:`vacuum`; returns the pinned version. Erasure overrides pins for versions
        that hold erased rows."""
        from .maintenance import pin

        return pin(self, name, version, reason)

    def unpin(self, name: str, version: str | int | None = None) -> int:
        """Remove the pin of one version (default: every pin) of an asset; returns how many."""
        from .maintenance import unpin

        return unpin(self, name, version)

    def pins(self, name: str | None = None) -> pl.DataFrame:
        """Pinned versions: ``asset, version, reason, pinned_at``."""
        from .maintenance import pins_frame

        return pins_frame(self, name)

    def drop(self, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Delete an asset's table and everything the catalog records about it.

        Refused while a defined asset reads it. Use it for assets removed from the code
        (``orphaned`` in :meth:`status`), or to start an asset over.

        Returns:
            ``asset, format, uri, table, files_removed, bytes_removed, records, dry_run``.
        """
        from .maintenance import drop

        return drop(self, name, dry_run=dry_run)

    def wipe(self, name: str, partitions: Any = None, *, dry_run: bool = False) -> dict[str, Any]:
        """Delete the rows of some partitions (``"all"``, or nothing for an unpartitioned
        asset: the whole table) and mark them missing, so the next run recomputes them."""
        from .maintenance import wipe

        return wipe(self, name, partitions, dry_run=dry_run)

    def erase(
        self, asset: str, where: Any, reason: str, *, who: str | None = None, dry_run: bool = False
    ) -> pl.DataFrame:
        """Erase rows everywhere they flowed: the asset, its dependants, and old versions.

        Deletes the rows matching ``where`` from ``asset``; then every dependant partition
        that consumed a version holding them is recomputed, or, when the dependant declares
        ``erase_by=[...]`` and its recorded column lineage carries the predicate's columns
        unchanged (``identity``), the predicate is applied to it directly; finally every
        older version of these tables is removed physically (retention and pins overridden,
        except pinned Iceberg versions shown to hold no matching row). An erasure record
        (who, when, a hash of the predicate, reason, assets, versions, files) is kept; it
        holds no erased value. See the compliance guide.

        Args:
            asset: the asset holding the rows.
            where: a Polars expression (``pl.col("customer_id") == "c-42"``) or a SQL predicate.
            reason: why (kept in the record).
            who: who asked (default: the login name).
            dry_run: report what would be done.

        Returns:
            ``asset, action, partitions, rows_deleted, version_before, version_after,
            files_removed, bytes_removed``: one row per table touched.
        """
        from .erasure import erase

        return erase(self, asset, where, reason, who=who, dry_run=dry_run)

    def erasures(self) -> pl.DataFrame:
        """Every erasure, newest first: ``id, erased_at, who, reason, predicate_hash, status,
        assets, files_removed, bytes_removed, detail``."""
        from .erasure import erasures_frame

        return erasures_frame(self)

    def _column_lineage_rows(self, key: str) -> list[dict[str, Any]]:
        from .lineage import column_rows

        return column_rows(self, key)

    # -- display --------------------------------------------------------------------------

    def __repr__(self) -> str:
        try:
            n = len(self.graph)
        except LakehouseError:
            n = -1
        return (
            f"Lakehouse(warehouse={self.settings.warehouse_uri!r}, "
            f"catalog={_mask(self.settings.catalog_url)!r}, "
            f"assets={n})"
        )

    def _repr_html_(self) -> str:
        from .notebook import lakehouse_html

        return lakehouse_html(self)


def _sources(lake: Lakehouse, state: Any) -> Any:
    """Staleness hook: ``source_changed`` and ``expired`` (see ``execution.sources``)."""
    if not uses_sources(lake.graph):
        return {}
    from .execution.sources import staleness_reasons

    return staleness_reasons(lake, state)


def _check_failed(lake: Lakehouse, state: Any) -> Any:
    """Staleness hook: partitions whose last run failed a blocking check."""
    from .execution.audit import check_failed_reasons

    return check_failed_reasons(lake, state)


def _mask(url: str) -> str:
    from .config import _mask as mask

    return mask(url)


def _as_uri(path: str) -> str:
    return path if "://" in path else f"file://{path}"


def _utcnow() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def _new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _parse_partitions(spec: AssetSpec, partitions: Any, now: Any) -> RangeSet:
    from .partitions import RangeSet

    defn = spec.partitions
    assert defn is not None
    if isinstance(partitions, (str, list, tuple)):
        return defn.parse(
            partitions if isinstance(partitions, str) else list(partitions), asset=spec.key, now=now
        )
    if isinstance(partitions, RangeSet):
        return partitions
    raise ConfigError(
        f"partitions={partitions!r} is not a key, a list or a range",
        hint="e.g. '2013-01-01..2013-01-31'",
    )


def as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)
