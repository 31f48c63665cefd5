"""Column lineage from the SQL of a DuckDB relation (sqlglot)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._model import (
    _UNKNOWN_SRC,
    AGGREGATED,
    IDENTITY,
    TRANSFORMED,
    UNKNOWN,
    ColumnLineage,
    SourceTable,
    SrcCol,
    _Frame,
    _max_kind,
    _to_lineage,
    unknown_lineage,
)

# -------------------------------------------------------------------------- SQL


def relation_lineage(rel: Any, sources: Sequence[SourceTable], con: Any = None) -> ColumnLineage:
    """Column lineage of a DuckDB relation, from its SQL."""
    columns = [str(c) for c in rel.columns]
    try:
        sql = rel.sql_query()
    except Exception as exc:
        return unknown_lineage(columns, "duckdb-sql", f"the relation has no SQL: {exc}")
    schemas: dict[str, dict[str, str]] = {}
    for s in sources:
        if s.name is None:
            continue
        schema = dict(s.schema)
        if not schema and con is not None:
            try:
                schema = {
                    str(r[0]): str(r[1])
                    for r in con.execute(f"DESCRIBE {_quote(s.name)}").fetchall()
                }
            except Exception:
                schema = {}
        schemas[s.name] = schema
    return sql_lineage(sql, schemas, {s.name: s.asset for s in sources if s.name}, columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_lineage(
    sql: str,
    schemas: Mapping[str, Mapping[str, str]],
    tables: Mapping[str, str],
    columns: Sequence[str] | None = None,
    dialect: str = "duckdb",
) -> ColumnLineage:
    """Column lineage of one SQL query.

    Args:
        sql: the query.
        schemas: ``{table: {column: type}}`` of the tables it reads.
        tables: ``{table name in the SQL: asset}``.
        columns: the real output column names (case as the engine reports them).
        dialect: the sqlglot dialect.
    """
    try:
        return _sql_lineage(sql, schemas, tables, columns, dialect)
    except Exception as exc:
        return unknown_lineage(
            list(columns or []),
            "duckdb-sql",
            f"the SQL could not be analysed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )


def _sql_lineage(
    sql: str,
    schemas: Mapping[str, Mapping[str, str]],
    tables: Mapping[str, str],
    columns: Sequence[str] | None,
    dialect: str,
) -> ColumnLineage:
    from sqlglot import exp, parse_one
    from sqlglot.lineage import lineage
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import traverse_scope
    from sqlglot.schema import ensure_schema

    schema_in: dict[str, object] = {
        t: {c: (typ or "UNKNOWN") for c, typ in cols.items()} for t, cols in schemas.items()
    }
    try:
        schema = ensure_schema(schema_in, dialect=dialect)
    except Exception:
        schema_in = {t: dict.fromkeys(cols, "UNKNOWN") for t, cols in schemas.items()}
        schema = ensure_schema(schema_in, dialect=dialect)
    tree = qualify(
        parse_one(sql, dialect=dialect),
        schema=schema,
        dialect=dialect,
        validate_qualify_columns=False,
        identify=False,
    )
    by_lower = {name.lower(): asset for name, asset in tables.items()}
    real_cols = {t.lower(): {c.lower(): c for c in cols} for t, cols in schemas.items()}

    def leaf_source(node: Any) -> SrcCol | None:
        src = node.source
        if not isinstance(src, exp.Table):
            return None
        asset = by_lower.get(src.name.lower())
        if asset is None:
            return None
        col = parse_one(node.name, dialect=dialect)
        name = col.name if isinstance(col, exp.Column) else node.name.split(".")[-1].strip('"')
        real = real_cols.get(src.name.lower(), {}).get(name.lower(), name)
        return (asset, real)

    def level(e: Any) -> str:
        inner = e.this if isinstance(e, exp.Alias) else e
        if isinstance(inner, (exp.Column, exp.Table, exp.Star)):
            return IDENTITY
        if isinstance(inner, exp.Coalesce) and all(
            isinstance(a, exp.Column) for a in [inner.this, *inner.expressions]
        ):
            return IDENTITY  # a USING / natural join key
        if inner.find(exp.AggFunc, exp.Window) is not None:
            return AGGREGATED
        return TRANSFORMED

    def paths(node: Any, kind: str, out: dict[SrcCol, str], seen: frozenset[int]) -> None:
        if id(node) in seen:
            return
        if not node.downstream:
            if not isinstance(node.expression, (exp.Table, exp.Placeholder)) and not isinstance(
                node.source, exp.Table
            ):
                return  # a projection that reads no column (count(*), a literal)
            src = leaf_source(node)
            key = src if src is not None else _UNKNOWN_SRC
            new = kind if src is not None else UNKNOWN
            out[key] = new if key not in out else _max_kind(out[key], new)
            return
        here = _max_kind(kind, level(node.expression)) if node.expression is not None else kind
        for d in node.downstream:
            paths(d, here, out, seen | {id(node)})

    nodes = lineage(None, tree, schema=schema, dialect=dialect, copy=False)
    frame = _Frame({})
    for name, node in nodes.items():
        srcs: dict[SrcCol, str] = {}
        paths(node, IDENTITY, srcs, frozenset())
        frame.cols[name] = srcs

    # filter/join keys: WHERE, JOIN ... ON, HAVING, QUALIFY, ORDER BY under LIMIT, in every scope
    from sqlglot.lineage import to_node

    def resolve(col: Any, scope: Any) -> dict[SrcCol, str]:
        s = scope
        while s is not None and col.table not in s.sources:
            s = s.parent
        if s is None:
            return {_UNKNOWN_SRC: UNKNOWN}
        source = s.sources[col.table]
        if isinstance(source, exp.Table):
            found = leaf_source(_Leaf(f"{_quote(col.table)}.{_quote(col.name)}", source))
            return {found: IDENTITY} if found else {_UNKNOWN_SRC: UNKNOWN}
        out: dict[SrcCol, str] = {}
        paths(
            to_node(col.name, scope=source, dialect=dialect, schema=schema),
            IDENTITY,
            out,
            frozenset(),
        )
        return out

    for scope in traverse_scope(tree):
        sel = scope.expression
        if not isinstance(sel, exp.Select):
            continue
        clauses = [sel.args.get(k) for k in ("where", "having", "qualify")]
        clauses += [j.args.get("on") for j in sel.args.get("joins") or []]
        if sel.args.get("limit") is not None or sel.args.get("offset") is not None:
            clauses.append(sel.args.get("order"))
        subqueries = {id(s.expression): s for s in scope.subquery_scopes}
        for clause in clauses:
            if clause is None:
                continue
            for col in _columns_in_scope(clause):
                frame.indirect.update(
                    dict.fromkeys(k for k in resolve(col, scope) if k != _UNKNOWN_SRC)
                )
            for sub in clause.find_all(exp.Select):
                sub_scope = subqueries.get(id(sub))
                if sub_scope is None:
                    continue
                for name in sub.named_selects:
                    out: dict[SrcCol, str] = {}
                    paths(
                        to_node(name, scope=sub_scope, dialect=dialect, schema=schema),
                        IDENTITY,
                        out,
                        frozenset(),
                    )
                    frame.indirect.update(dict.fromkeys(k for k in out if k != _UNKNOWN_SRC))

    names = list(nodes)
    if columns is not None:
        real = {c.lower(): c for c in columns}
        if len(columns) != len(names):
            return unknown_lineage(
                list(columns), "duckdb-sql", "the SQL's columns differ from the relation's"
            )
        renamed = _Frame({}, frame.indirect)
        for ours, theirs in zip(names, columns, strict=True):
            if ours.lower() != theirs.lower() and ours.lower() in real:
                return unknown_lineage(
                    list(columns), "duckdb-sql", "the SQL's columns differ from the relation's"
                )
            renamed.cols[theirs] = frame.cols[ours]
        frame, names = renamed, list(columns)
    return _to_lineage(frame, names, "duckdb-sql")


@dataclass
class _Leaf:
    name: str
    source: Any


def _columns_in_scope(clause: Any) -> Iterator[Any]:
    """Columns of ``clause`` that are not inside a nested query."""
    from sqlglot import exp

    stack = [clause]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Column):
            yield node
            continue
        if node is not clause and isinstance(node, (exp.Select, exp.Subquery)):
            continue
        stack.extend(node.iter_expressions())
