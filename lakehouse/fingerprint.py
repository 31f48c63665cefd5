"""Code versions: stable fingerprints of asset functions.

The code version of a function (16 hex characters) is a hash of

* its **normalized source**: the definition is parsed with :mod:`ast`, docstrings (and
  every other no-op string statement) are removed, the decorators of the top-level
  function are dropped (``@lh.asset(...)`` arguments belong to the asset spec, not to the
  code) and the tree is serialized without line/column attributes. Comments, blank lines,
  formatting, quoting style and docstrings never change the version; any change to the
  logic does. The source comes from :mod:`linecache`, which is also where IPython and
  Jupyter register every notebook cell, so functions defined in notebooks work; each file
  or cell is parsed once and its definitions are found by line number (lambdas sharing a
  line are told apart by column), with ``inspect.getsource`` + ``textwrap.dedent`` as the
  fallback.
* the **global names it reads** (found in its bytecode, so local variables never count),
  resolved in ``fn.__globals__``, plus closure variables and default argument values,
  followed transitively through user code:

  - constants (numbers, strings, bytes, ``None``, and tuples / lists / dicts / sets of
    those) by value; other objects by type and, when it has no memory address in it,
    their ``repr``;
  - user functions and classes (defined in ``__main__``, a notebook cell, or a module
    living outside the standard library and site-packages) recursively by their own
    normalized source and the names *they* read; mutual recursion is fine;
  - ``module.attr`` chains through user modules down to the attribute read;
  - modules and objects of libraries (and of lakehouse itself) by name, plus the
    package ``__version__`` when the package already set one (nothing is imported);
  - builtins are not followed.

Functions without retrievable source (built with ``exec`` and no ``linecache`` entry)
fall back to hashing their bytecode, constants and names; lambdas and
``functools.partial`` objects are supported, and wrappers exposing ``__wrapped__`` are
fingerprinted by their innermost function.

The source analysis of each code object is cached for the life of the process (a code
object never changes); the cheap walk over the globals it reads is redone on every call,
so rebinding a constant or helper is always seen.

Limitations:
    * Only what the function reaches by name is followed: a helper reached through an
      attribute of an object (``self.helper``, ``config.fn``) or passed in at run time is
      not part of the version.
    * Mutable module-level containers are hashed by their current content, so a global
      cache the asset fills at run time makes the version drift. A container of more
      than 100,000 elements counts by type and length only. Library objects whose
      ``repr`` hides their state (or shows only part of it) count by type.
    * Versions from source are the same on Python 3.10 to 3.13; the bytecode fallback
      (no source) is stable within one Python minor version only.
    * A module edited on disk after it was imported may be fingerprinted from the edited
      file (when ``linecache`` had not read it yet and the signature still matches).

Example:
    >>> ns = {}
    >>> exec("def double(x):\\n    return 2 * x\\n", ns)
    >>> v = code_version(ns["double"])
    >>> len(v), v == code_version(ns["double"])
    (16, True)
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dis
import enum
import functools
import hashlib
import inspect
import linecache
import os
import re
import sys
import textwrap
import types
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["code_version", "code_versions"]

#: Bumped whenever the fingerprint algorithm changes, so old and new versions never match.
_SCHEME = "lakehouse-code-version/1"

_OWN_PACKAGE = __name__.partition(".")[0]
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_HASCONST = frozenset(dis.hasconst)
_SIMPLE_TYPES = (int, float, complex, str, bytes, bool, type(None), type(...))
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_CO_OPTIMIZED = inspect.CO_OPTIMIZED
_CO_VARARGS = inspect.CO_VARARGS
_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS
#: Containers longer than this are described by type and length only (a fixed rule, so a
#: description never depends on what else was described before it).
_MAX_CONTAINER = 100_000
_MAX_DEPTH = 40


def code_version(fn: Callable[..., Any]) -> str:
    """Return the code version of ``fn``: 16 hex characters, stable across processes.

    Args:
        fn: a function (module-level, nested, lambda, notebook-cell or ``exec``-built),
            a ``functools.partial``, a bound method, a decorated function exposing
            ``__wrapped__``, or any other callable.

    Returns:
        A hex fingerprint of the normalized source of ``fn`` and of the constants,
        helpers and libraries it references (see the module docstring).

    Example:
        >>> one, two = {}, {}
        >>> exec("def f(x):\\n    return x + 1  # add one\\n", one)
        >>> exec("def f(x):\\n    return x + 2\\n", two)
        >>> code_version(one["f"]) == code_version(two["f"])
        False
    """
    return _Walker().version(fn)


def code_versions(fns: Iterable[Callable[..., Any]]) -> dict[Callable[..., Any], str]:
    """Return the code version of every function in ``fns``, sharing one memo.

    Helpers referenced by several functions are fingerprinted once. The result for each
    function is identical to :func:`code_version` of that function alone.

    Args:
        fns: the functions (or other callables) to fingerprint; they must be hashable.

    Returns:
        A dict from each callable to its code version.
    """
    walker = _Walker()
    return {fn: walker.version(fn) for fn in fns}


# --------------------------------------------------------------------------- hashing


def _hash(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


# ------------------------------------------------------------- process-wide caches


class _Entry(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a cached object that carries its cache key and value."""

    __slots__ = ("key", "value")

    def __new__(cls, obj: object, callback: Any, key: int, value: object) -> _Entry:
        self = super().__new__(cls, obj, callback)
        self.key = key
        self.value = value
        return self

    def __init__(self, obj: object, callback: Any, key: int, value: object) -> None:
        super().__init__(obj, callback)


class _IdentityCache(dict[int, _Entry]):
    """Values keyed by object identity; entries die with their key object.

    One weak reference per entry holds the key and the value, with one shared callback,
    so an entry costs a single tracked object.
    """

    def __init__(self) -> None:
        super().__init__()

        def _drop(ref: _Entry, cache: _IdentityCache = self) -> None:
            if cache.get(ref.key) is ref:
                del cache[ref.key]

        self._drop = _drop

    def lookup(self, obj: object) -> Any:
        entry = self.get(id(obj))
        if entry is not None and entry() is obj:
            return entry.value
        return None

    def store(self, obj: object, value: object) -> None:
        key = id(obj)
        with contextlib.suppress(TypeError):  # not weak-referenceable: do not cache
            self[key] = _Entry(obj, self._drop, key, value)


@dataclass(frozen=True)
class _CodeInfo:
    """What never changes about one code object."""

    #: digest of the normalized AST without decorators; None when no source was found
    source: str | None
    #: digest of the decorator expressions (helpers keep them; the top function does not)
    decorators: str
    #: names read by the decorator expressions
    decorator_names: tuple[str, ...]
    #: digest of bytecode + constants + names, used when there is no source
    bytecode: str | None
    #: global names read, with the attribute chain read from each (``("mod", "fn")``)
    refs: tuple[tuple[str, ...], ...]


_CODE_CACHE = _IdentityCache()
_CLASS_CACHE = _IdentityCache()
_MODULE_KIND: dict[str, tuple[object, bool]] = {}


# ------------------------------------------------------------------ user code or not


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    import site
    import sysconfig

    roots: set[str] = set()
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        paths = sysconfig.get_paths(
            vars={
                "base": prefix,
                "platbase": prefix,
                "installed_base": prefix,
                "installed_platbase": prefix,
            }
        )
        roots.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - some embedded interpreters
        pass
    return tuple(sorted({_norm_path(r) + os.sep for r in roots if r}))


def _norm_path(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _is_library_path(path: str) -> bool:
    norm = _norm_path(path)
    parts = norm.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return any(norm.startswith(root) for root in _library_roots())


def _is_user_module(name: object) -> bool:
    """True when module ``name`` holds user code (followed), False for libraries."""
    if not isinstance(name, str) or not name or name == "__main__":
        return True
    top = name.partition(".")[0]
    if top == _OWN_PACKAGE or top in sys.stdlib_module_names or top == "builtins":
        return False
    module = sys.modules.get(name)
    if module is None:
        return True  # exec'd into a made-up namespace: dynamic user code
    cached = _MODULE_KIND.get(name)
    if cached is not None and cached[0] is module:
        return cached[1]
    file = getattr(module, "__file__", None)
    if isinstance(file, str) and file:
        user = not _is_library_path(file)
    else:
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None)
        paths = list(getattr(module, "__path__", None) or ())
        if name in sys.builtin_module_names or origin in ("built-in", "frozen"):
            user = False
        elif paths:  # namespace package
            user = not all(_is_library_path(str(p)) for p in paths)
        else:
            user = True  # a module object made at run time
    _MODULE_KIND[name] = (module, user)
    return user


def _package_version(module_name: str) -> str:
    top_name = module_name.partition(".")[0]
    if top_name in sys.stdlib_module_names:
        return ""  # the standard library goes with Python, which is not part of versions
    top = sys.modules.get(top_name)
    if top is None:
        return ""
    version = vars(top).get("__version__")  # no module __getattr__: never imports
    return version if isinstance(version, str) else ""


def _library_label(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(module, str):
        self_obj = getattr(obj, "__self__", None)
        module = type(self_obj).__module__ if self_obj is not None else ""
    if not isinstance(qualname, str):
        qualname = type(obj).__qualname__
    version = _package_version(module) if module else ""
    return f"lib:{module}:{qualname}@{version}"


# ------------------------------------------------------------- source normalization

_DEF_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass
class _FileIndex:
    """One parsed source file (or notebook cell): its definitions by line and qualname."""

    statements: list[ast.stmt]
    #: function definitions by their first line (the first decorator's, as co_firstlineno)
    functions: dict[int, list[ast.FunctionDef | ast.AsyncFunctionDef]]
    #: class definitions by qualified name
    classes: dict[str, list[ast.ClassDef]]


#: filename -> (the linecache lines it was parsed from, the index or None if unparseable)
_FILE_CACHE: dict[str, tuple[list[str], _FileIndex | None]] = {}
_FILE_CACHE_SIZE = 64


def _file_index(filename: str, lines: list[str]) -> _FileIndex | None:
    cached = _FILE_CACHE.get(filename)
    if cached is not None and cached[0] is lines:
        return cached[1]
    try:
        statements = ast.parse("".join(lines)).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        index = None
    else:
        index = _FileIndex(statements, {}, {})
        _index_statements(statements, "", index)
    if len(_FILE_CACHE) >= _FILE_CACHE_SIZE:
        with contextlib.suppress(StopIteration, RuntimeError, KeyError):
            del _FILE_CACHE[next(iter(_FILE_CACHE))]  # oldest first
    _FILE_CACHE[filename] = (lines, index)
    return index


def _index_statements(statements: list[ast.stmt], prefix: str, index: _FileIndex) -> None:
    """Record every def and class, walking statements only (never expressions)."""
    for stmt in statements:
        if isinstance(stmt, _DEF_TYPES):
            first = min([d.lineno for d in stmt.decorator_list] + [stmt.lineno])
            index.functions.setdefault(first, []).append(stmt)
            _index_statements(stmt.body, f"{prefix}{stmt.name}.<locals>.", index)
            continue
        if isinstance(stmt, ast.ClassDef):
            index.classes.setdefault(prefix + stmt.name, []).append(stmt)
            _index_statements(stmt.body, f"{prefix}{stmt.name}.", index)
            continue
        for field in ("body", "orelse", "finalbody"):
            block = getattr(stmt, field, None)
            if isinstance(block, list):
                _index_statements(block, prefix, index)
        for holder in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())):
            _index_statements(holder.body, prefix, index)


def _code_params(code: types.CodeType) -> tuple[str, ...]:
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & _CO_VARARGS) + bool(code.co_flags & _CO_VARKEYWORDS)
    return tuple(code.co_varnames[:n])


def _ast_params(args: ast.arguments) -> tuple[str, ...]:
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if args.vararg is not None:
        names.append(args.vararg.arg)
    if args.kwarg is not None:
        names.append(args.kwarg.arg)
    return tuple(names)


def _lambdas_at(statements: list[ast.stmt], line: int) -> list[ast.Lambda]:
    found: list[ast.Lambda] = []
    for stmt in statements:
        end = getattr(stmt, "end_lineno", None) or stmt.lineno
        if stmt.lineno <= line <= end:
            found.extend(
                node
                for node in ast.walk(stmt)
                if isinstance(node, ast.Lambda) and node.lineno == line
            )
    return found


def _pick_lambda(candidates: list[ast.Lambda], code: types.CodeType) -> ast.Lambda | None:
    """Tell lambdas sharing a line apart by the source positions of their bytecode."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    positions_of = getattr(code, "co_positions", None)  # Python 3.11+
    if positions_of is None:
        return None
    spots = [
        ((p[0], p[2]), (p[1], p[3]))
        for p in positions_of()
        if None not in p and (p[0], p[2]) != (p[1], p[3])  # skip zero-width (RESUME)
    ]
    if not spots:
        return None

    def inside(node: ast.Lambda) -> bool:
        start = (node.body.lineno, node.body.col_offset)
        end = (node.body.end_lineno or node.body.lineno, node.body.end_col_offset or 0)
        return all(start <= first and last <= end for first, last in spots)

    # innermost first: a lambda nested in another lies inside both
    matching = [c for c in candidates if inside(c)]
    matching.sort(
        key=lambda n: (
            (n.end_lineno or n.lineno) - n.lineno,
            (n.end_col_offset or 0) - n.col_offset,
        )
    )
    return matching[0] if matching else None


_MAX_BLOCK_ATTEMPTS = 12


def _definition_from_block(
    fn: types.FunctionType, lines: list[str]
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """Parse just the lines of a ``def`` (fast for one function of a big file).

    The block starts at ``co_firstlineno`` (the first decorator) and is tried up to each
    later line indented no deeper than the ``def``. A line like that inside the function
    can only continue an open bracket, string or backslash, so cutting there leaves a
    syntax error and the next candidate is tried: the first block that parses is the
    whole definition.
    """
    code = fn.__code__
    if code.co_name == "<lambda>":
        return None
    start = code.co_firstlineno - 1
    if not 0 <= start < len(lines):
        return None
    first = lines[start]
    indent = len(first) - len(first.lstrip())
    params = _code_params(code)
    attempts = 0
    for end in range(start + 1, len(lines) + 1):
        if end < len(lines):
            line = lines[end]
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#") or len(line) - len(stripped) > indent:
                continue
        block = "".join(lines[start:end])
        try:
            if indent:
                wrapper = ast.parse("if 1:\n" + block).body[0]
                statements = wrapper.body if isinstance(wrapper, ast.If) else []
            else:
                statements = ast.parse(block).body
        except (SyntaxError, ValueError):
            attempts += 1
            if attempts >= _MAX_BLOCK_ATTEMPTS:
                return None
            continue
        node = statements[0] if statements else None
        if (
            isinstance(node, _DEF_TYPES)
            and node.name == code.co_name
            and _ast_params(node.args) == params
        ):
            return node
        return None
    return None


def _definition_from_file(
    fn: types.FunctionType, lines: list[str]
) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | None:
    code = fn.__code__
    index = _file_index(code.co_filename, lines)
    if index is None:
        return None
    params = _code_params(code)
    if code.co_name == "<lambda>":
        lambdas = [
            node
            for node in _lambdas_at(index.statements, code.co_firstlineno)
            if _ast_params(node.args) == params
        ]
        return _pick_lambda(lambdas, code)
    found = [
        node
        for node in index.functions.get(code.co_firstlineno, ())
        if node.name == code.co_name and _ast_params(node.args) == params
    ]
    return found[0] if len(found) == 1 else None


def _is_pseudo_file(filename: str) -> bool:
    """A made-up file name (``<string>``, ``<stdin>``): ``linecache`` never reads such a
    file from disk or through a module loader, so its lines are what is cached, if any."""
    return (
        filename.startswith("<") and filename.endswith(">") and not filename.startswith("<frozen")
    )


def _definition_from_inspect(
    fn: types.FunctionType,
) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | None:
    """Slower fallback: ``inspect.getsource`` of just the block."""
    code = fn.__code__
    try:
        source = inspect.getsource(fn)
    except Exception:  # OSError, TypeError, tokenize errors: no usable source
        return None
    statements = _parse_block(source)
    if not statements:
        return None
    params = _code_params(code)
    if code.co_name == "<lambda>":
        lambdas = [
            node
            for stmt in statements
            for node in ast.walk(stmt)
            if isinstance(node, ast.Lambda) and _ast_params(node.args) == params
        ]
        return lambdas[0] if len(lambdas) == 1 else None
    first = statements[0]
    if (
        isinstance(first, _DEF_TYPES)
        and first.name == code.co_name
        and _ast_params(first.args) == params
    ):
        return first
    return None  # the source on disk no longer matches the running code


def _parse_block(source: str) -> list[ast.stmt] | None:
    try:
        return ast.parse(textwrap.dedent(source)).body
    except (SyntaxError, ValueError):
        pass
    # dedent fails when a multi-line string starts at column 0 inside an indented def
    try:
        wrapper = ast.parse("if 1:\n" + source).body[0]
    except (SyntaxError, ValueError):
        return None
    return wrapper.body if isinstance(wrapper, ast.If) else None


def _is_string_statement(stmt: object) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


_SKIPPED_FIELDS = frozenset({"kind", "type_comment"})
_BLOCK_FIELDS = frozenset({"body", "orelse", "finalbody"})
#: node class -> (its "Name(" prefix, its fields to serialize as (field, "field=") pairs)
_NODE_SPECS: dict[type, tuple[str, tuple[tuple[str, str], ...]]] = {}


def _node_spec(cls: type[ast.AST]) -> tuple[str, tuple[tuple[str, str], ...]]:
    spec = _NODE_SPECS.get(cls)
    if spec is None:
        fields = tuple((f, f + "=") for f in cls._fields if f not in _SKIPPED_FIELDS)
        spec = _NODE_SPECS[cls] = (cls.__name__ + "(", fields)
    return spec


def _dump(node: ast.AST, out: list[str], skip: frozenset[str] = frozenset()) -> None:
    """Serialize an AST without positions, docstrings or empty fields.

    Like ``ast.dump(node, include_attributes=False)``, but no-op string statements
    (docstrings) are left out and so are empty optional fields, which keeps the text the
    same on Python versions that add new optional fields. ``skip`` names fields of
    ``node`` itself to leave out (the decorators of the top-level function).
    """
    append = out.append
    prefix, fields = _node_spec(type(node))
    append(prefix)
    for name, label in fields:
        if name in skip:
            continue
        value = getattr(node, name, None)
        if value is None:
            continue
        if type(value) is list:
            if name in _BLOCK_FIELDS:
                value = [s for s in value if not _is_string_statement(s)]
            if not value:
                continue
            append(label)
            append("[")
            for item in value:
                if isinstance(item, ast.AST):
                    _dump(item, out)
                else:  # e.g. the names of Global / Nonlocal
                    append(f"{type(item).__name__}:{item!r}")
                append(",")
            append("],")
        elif isinstance(value, ast.AST):
            append(label)
            _dump(value, out)
            append(",")
        else:
            append(label)
            append(f"{type(value).__name__}:{value!r}")
            append(",")
    append(")")


def _digest_ast(node: ast.AST, skip: frozenset[str] = frozenset()) -> str:
    out: list[str] = []
    _dump(node, out, skip)
    return _hash("".join(out))


def _loaded_names(nodes: Iterable[ast.AST]) -> tuple[str, ...]:
    names = {
        n.id
        for node in nodes
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return tuple(sorted(names))


# ------------------------------------------------------------------ bytecode analysis

_OPMAP = dis.opmap
_EXTENDED_ARG = dis.EXTENDED_ARG
_CACHE_OP = _OPMAP.get("CACHE", -1)
#: opcode -> right shift giving the co_names index (the low bit is a flag on 3.11+/3.12+)
_GLOBAL_SHIFT = {
    _OPMAP[name]: shift
    for name, shift in (
        ("LOAD_GLOBAL", 1 if sys.version_info >= (3, 11) else 0),
        ("LOAD_NAME", 0),
        ("LOAD_FROM_DICT_OR_GLOBALS", 0),
    )
    if name in _OPMAP
}
_ATTR_SHIFT = {
    _OPMAP[name]: shift
    for name, shift in (
        ("LOAD_ATTR", 1 if sys.version_info >= (3, 12) else 0),
        ("LOAD_METHOD", 0),
    )
    if name in _OPMAP
}


def _scan_refs(code: types.CodeType, chains: set[tuple[str, ...]]) -> None:
    """Fast path of :func:`_global_refs` for one code object: reads co_code directly."""
    raw = code.co_code
    names = code.co_names
    chain: list[str] | None = None
    ext = 0
    for i in range(0, len(raw), 2):
        op = raw[i]
        arg = raw[i + 1] | ext
        if op == _EXTENDED_ARG:
            ext = arg << 8
            continue
        ext = 0
        if op == _CACHE_OP:
            continue  # inline cache entries are not instructions
        shift = _GLOBAL_SHIFT.get(op)
        if shift is not None:
            if chain:
                chains.add(tuple(chain))
            chain = [names[arg >> shift]]
            continue
        if chain is not None:
            shift = _ATTR_SHIFT.get(op)
            if shift is not None:
                chain.append(names[arg >> shift])
            else:
                chains.add(tuple(chain))
                chain = None
    if chain:
        chains.add(tuple(chain))


def _scan_refs_dis(code: types.CodeType, chains: set[tuple[str, ...]]) -> None:
    """Reference implementation of :func:`_scan_refs` on top of :mod:`dis`."""
    chain: list[str] | None = None
    for ins in dis.get_instructions(code):
        if ins.opname in _GLOBAL_OPS:
            if chain:
                chains.add(tuple(chain))
            chain = [str(ins.argval)]
        elif chain is not None and ins.opname in _ATTR_OPS:
            chain.append(str(ins.argval))
        elif chain is not None:
            chains.add(tuple(chain))
            chain = None
    if chain:
        chains.add(tuple(chain))


def _global_refs(code: types.CodeType, *, fast: bool = True) -> tuple[tuple[str, ...], ...]:
    """Global names read by ``code`` and its nested code, with their attribute chains.

    ``("helpers", "clean")`` means the code reads global ``helpers`` and then its
    attribute ``clean``. Reads of local and closure variables are not included.
    """
    chains: set[tuple[str, ...]] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        if fast:
            try:
                _scan_refs(current, chains)
            except (IndexError, TypeError):  # an unexpected bytecode layout
                _scan_refs_dis(current, chains)
        else:
            _scan_refs_dis(current, chains)
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return tuple(sorted(chains))


def _const_text(value: object) -> str:
    if isinstance(value, types.CodeType):
        return "code:" + _bytecode_digest(value)
    if isinstance(value, frozenset):
        return "frozenset{" + ",".join(sorted(_const_text(v) for v in value)) + "}"
    if isinstance(value, tuple):
        return "(" + ",".join(_const_text(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


def _bytecode_digest(code: types.CodeType) -> str:
    """Fingerprint of a code object without its source: positions and docstring excluded."""
    consts = list(code.co_consts)
    if consts and isinstance(consts[0], str) and code.co_flags & _CO_OPTIMIZED:
        used = any(ins.opcode in _HASCONST and ins.arg == 0 for ins in dis.get_instructions(code))
        if not used:  # a function's docstring lives in co_consts[0] and is never loaded
            consts[0] = None
    return _hash(
        code.co_name,
        repr(
            (
                code.co_argcount,
                code.co_posonlyargcount,
                code.co_kwonlyargcount,
                code.co_flags,
                code.co_names,
                code.co_varnames,
                code.co_freevars,
                code.co_cellvars,
            )
        ),
        code.co_code.hex(),
        ",".join(_const_text(c) for c in consts),
    )


def _function_info(fn: types.FunctionType) -> _CodeInfo:
    code = fn.__code__
    cached: _CodeInfo | None = _CODE_CACHE.lookup(code)
    if cached is not None:
        return cached
    info = _analyze_function(fn)
    _CODE_CACHE.store(code, info)
    return info


_NO_DECORATORS = frozenset({"decorator_list"})


def _analyze_function(fn: types.FunctionType) -> _CodeInfo:
    code = fn.__code__
    refs = _global_refs(code)
    try:
        # The lines are read once; a function has no source when there are none under a
        # made-up file name such as ``<string>`` (``exec``): ``inspect`` reads the same
        # ``linecache`` entry, so asking it too would only repeat the failed lookup.
        lines = linecache.getlines(code.co_filename, fn.__globals__)
        definition = None
        if lines:
            definition = _definition_from_block(fn, lines) or _definition_from_file(fn, lines)
        if definition is None and (lines or not _is_pseudo_file(code.co_filename)):
            definition = _definition_from_inspect(fn)
        if definition is not None:
            decorators = [] if isinstance(definition, ast.Lambda) else definition.decorator_list
            return _CodeInfo(
                source=_digest_ast(definition, _NO_DECORATORS),
                decorators=_hash(*(_digest_ast(d) for d in decorators)) if decorators else "",
                decorator_names=_loaded_names(decorators),
                bytecode=None,
                refs=refs,
            )
    except Exception:  # e.g. RecursionError on an absurdly deep expression: use bytecode
        pass
    return _CodeInfo(
        source=None,
        decorators="",
        decorator_names=(),
        bytecode=_bytecode_digest(code),
        refs=refs,
    )


_NO_SOURCE = "-"


def _class_functions(cls: type) -> list[types.FunctionType]:
    found = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
        if isinstance(value, types.FunctionType):
            found.append(value)
    return found


def _is_derived_member(member: object) -> bool:
    """True for a method that is not user source: made by ``@dataclass`` & co. or a library.

    Such methods are fully determined by the class source (its decorators and fields),
    which is hashed already; their generated bytecode differs between Python versions.
    """
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if not callable(member) or isinstance(member, type):
        return False
    inner = _unwrap(member)
    if not isinstance(inner, types.FunctionType):
        return False
    return not _is_user_module(inner.__module__) or _function_info(inner).source is None


def _class_definition(cls: type) -> ast.ClassDef | None:
    # Where the class lives: its module's file, else the file of one of its methods
    # (classes in notebook cells have no module file).
    places: list[tuple[str, dict[str, Any] | None]] = []
    module = sys.modules.get(cls.__module__)
    module_file = getattr(module, "__file__", None)
    if isinstance(module_file, str):
        places.append((module_file, vars(module) if module is not None else None))
    for method in _class_functions(cls):
        places.append((method.__code__.co_filename, method.__globals__))
    seen: set[str] = set()
    for filename, module_globals in places:
        if filename in seen:
            continue
        seen.add(filename)
        lines = linecache.getlines(filename, module_globals)
        index = _file_index(filename, lines) if lines else None
        found = index.classes.get(cls.__qualname__, []) if index is not None else []
        if len(found) == 1:
            return found[0]
    return None


def _class_source(cls: type) -> str | None:
    cached: str | None = _CLASS_CACHE.lookup(cls)
    if cached is not None:
        return None if cached == _NO_SOURCE else cached
    try:
        definition = _class_definition(cls)
        digest = _digest_ast(definition) if definition is not None else None
    except Exception:  # unreadable source: describe the class by its members only
        digest = None
    _CLASS_CACHE.store(cls, digest or _NO_SOURCE)
    return digest


# ---------------------------------------------------------------------- graph walk


_SIMPLE_TYPE_SET = frozenset(_SIMPLE_TYPES)


def _only_simple(
    obj: tuple[Any, ...] | list[Any] | dict[Any, Any] | set[Any] | frozenset[Any],
) -> bool:
    """True when every element (key and value) is a number, string, bytes or None."""
    if isinstance(obj, dict):
        return set(map(type, obj)) <= _SIMPLE_TYPE_SET and (
            set(map(type, obj.values())) <= _SIMPLE_TYPE_SET
        )
    return set(map(type, obj)) <= _SIMPLE_TYPE_SET


class _Node:
    """A user function or class in the reference graph of one walk."""

    __slots__ = ("digest", "edges", "head", "index", "low", "obj", "on_stack", "top")

    def __init__(self, obj: object, top: bool) -> None:
        self.obj = obj
        self.top = top
        self.head = ""
        self.edges: list[tuple[str, list[_Node]]] = []
        self.index = -1
        self.low = -1
        self.on_stack = False
        self.digest: str | None = None


def _unwrap(obj: Any) -> Any:
    try:
        return inspect.unwrap(obj)
    except Exception:  # ValueError on a __wrapped__ cycle, odd proxies
        return obj


class _Walker:
    """One fingerprinting pass: memoises nodes and values, cycle-safe (Tarjan SCCs)."""

    def __init__(self) -> None:
        self._nodes: dict[int, _Node] = {}
        self._values: dict[int, tuple[str, list[_Node]] | None] = {}
        self._keep: list[object] = []  # keeps every id()-keyed object alive
        self._stack: list[_Node] = []
        self._counter = 0

    # public entry -----------------------------------------------------------------

    def version(self, fn: Callable[..., Any]) -> str:
        target = _unwrap(fn)
        if isinstance(target, types.MethodType) and isinstance(target.__func__, types.FunctionType):
            target = _unwrap(target.__func__)
        children: list[_Node] = []
        if isinstance(target, types.FunctionType):
            # Edges never lead back to a top node (they make helper nodes, top=False), so
            # it is not memoised: it dies with this call instead of living for the batch.
            children.append(_Node(target, top=True))
            text = "fn"
        else:
            text = self._describe(target, children, 0)
        for child in children:
            self._complete(child)
        return _hash(_SCHEME, text, *(c.digest or "" for c in children))

    # nodes ------------------------------------------------------------------------

    def _node(self, obj: object) -> _Node:
        """The memoised node of a referenced user function or class."""
        key = id(obj)
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _Node(obj, False)
            self._keep.append(obj)
        return node

    def _complete(self, node: _Node) -> None:
        if node.digest is None and node.index < 0:
            self._strongconnect(node)

    def _strongconnect(self, node: _Node) -> None:
        node.index = node.low = self._counter
        self._counter += 1
        self._stack.append(node)
        node.on_stack = True
        self._expand(node)
        for _, children in node.edges:
            for child in children:
                if child.digest is not None:
                    continue
                if child.index < 0:
                    self._strongconnect(child)
                    node.low = min(node.low, child.low)
                elif child.on_stack:
                    node.low = min(node.low, child.index)
        if node.low != node.index:
            return
        members: list[_Node] = []
        while True:
            member = self._stack.pop()
            member.on_stack = False
            members.append(member)
            if member is node:
                break
        self._assign_digests(members)

    @staticmethod
    def _assign_digests(members: list[_Node]) -> None:
        inside = {id(m) for m in members}
        if len(members) == 1 and not any(
            id(c) in inside for _, children in members[0].edges for c in children
        ):
            node = members[0]
            parts = [node.head]
            for text, children in node.edges:
                parts.append(text)
                parts.extend(c.digest or "" for c in children)
            node.digest = _hash(*parts)
            return
        # A strongly connected component: hash its members' contents in a canonical
        # order, so every member's version is independent of where the walk entered.
        contents = []
        for member in members:
            parts = [member.head]
            for text, children in member.edges:
                parts.append(text)
                parts.extend(
                    "@" + c.head if id(c) in inside else (c.digest or "") for c in children
                )
            contents.append(_hash(*parts))
        component = _hash(*sorted(contents))
        for member in members:
            member.digest = _hash("scc", member.head, component)

    def _expand(self, node: _Node) -> None:
        obj = node.obj
        if isinstance(obj, types.FunctionType):
            self._expand_function(node, obj)
        elif isinstance(obj, type):
            self._expand_class(node, obj)

    def _expand_function(self, node: _Node, fn: types.FunctionType) -> None:
        info = _function_info(fn)
        if info.source is not None:
            node.head = "src:" + info.source
            if not node.top and info.decorators:
                node.head += ";deco:" + info.decorators
        else:
            node.head = "code:" + (info.bytecode or "")
        namespace = fn.__globals__
        edges: dict[str, tuple[str, list[_Node]]] = {}
        for chain in info.refs:
            self._global_edge(chain, namespace, edges)
        if not node.top:
            for name in info.decorator_names:
                self._global_edge((name,), namespace, edges)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:
                edges["c:" + name] = ("c:" + name + "=<empty>", [])
                continue
            children: list[_Node] = []
            text = self._describe(value, children, 0)
            edges["c:" + name] = (f"c:{name}={text}", children)
        if fn.__defaults__:
            children = []
            text = self._describe(fn.__defaults__, children, 0)
            edges["d"] = ("d=" + text, children)
        if fn.__kwdefaults__:
            children = []
            text = self._describe(fn.__kwdefaults__, children, 0)
            edges["k"] = ("k=" + text, children)
        node.edges = [edges[k] for k in sorted(edges)]

    def _global_edge(
        self,
        chain: tuple[str, ...],
        namespace: dict[str, Any],
        edges: dict[str, tuple[str, list[_Node]]],
    ) -> None:
        name = chain[0]
        if name in namespace:
            value = namespace[name]
        elif name in vars(builtins):
            return  # builtins are not followed
        else:
            edges["g:" + name] = (f"g:{name}=<missing>", [])
            return
        path = [name]
        for attr in chain[1:]:
            if not (isinstance(value, types.ModuleType) and _is_user_module(value.__name__)):
                break
            try:
                value = getattr(value, attr)
            except Exception:
                value = _MISSING
            path.append(attr)
        label = "g:" + ".".join(path)
        if label in edges:
            return
        children: list[_Node] = []
        try:
            text = self._describe(value, children, 0)
        except Exception:  # an object that resists inspection: count its type only
            children = []
            text = "error:" + type(value).__qualname__
        edges[label] = (f"{label}={text}", children)

    def _expand_class(self, node: _Node, cls: type) -> None:
        source = _class_source(cls)
        node.head = "cls:" + (source if source is not None else "nosrc:" + cls.__qualname__)
        edges: list[tuple[str, list[_Node]]] = []
        for base in cls.__bases__:
            if base is object:
                continue
            children: list[_Node] = []
            edges.append(("base=" + self._describe(base, children, 0), children))
        for name, value in list(vars(cls).items()):
            dunder = name.startswith("__") and name.endswith("__")
            if dunder and not isinstance(value, (types.FunctionType, staticmethod, classmethod)):
                continue
            if source is not None and _is_derived_member(value):
                continue  # made by @dataclass & co. from the class source already hashed
            children = []
            text = self._describe(value, children, 0)
            edges.append((f"m:{name}={text}", children))
        node.edges = edges

    # values -----------------------------------------------------------------------

    def _describe(self, obj: object, out: list[_Node], depth: int) -> str:
        """Describe a referenced value; user functions/classes become nodes in ``out``."""
        if type(obj) in _SIMPLE_TYPES:
            return f"{type(obj).__name__}:{obj!r}"
        if depth > _MAX_DEPTH:
            return "<deep>"
        if isinstance(obj, (tuple, list, dict, set, frozenset)):
            return self._describe_container(obj, out, depth)
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
            if _is_user_module(name):
                return f"mod:{name}"
            return f"mod:{name}@{_package_version(name)}"
        if isinstance(obj, enum.Enum):
            value = self._describe(obj.value, out, depth + 1)
            return f"enum:{type(obj).__qualname__}.{obj.name}={value}"
        if isinstance(obj, functools.partial):
            func = self._describe(obj.func, out, depth + 1)
            args = self._describe(obj.args, out, depth + 1)
            keywords = self._describe(obj.keywords, out, depth + 1)
            return f"partial({func};{args};{keywords})"
        if isinstance(obj, functools.partialmethod):
            func = self._describe(obj.func, out, depth + 1)
            args = self._describe(obj.args, out, depth + 1)
            keywords = self._describe(obj.keywords, out, depth + 1)
            return f"partialmethod({func};{args};{keywords})"
        if isinstance(obj, functools.cached_property):
            return "cached_property(" + self._describe(obj.func, out, depth + 1) + ")"
        if isinstance(obj, (staticmethod, classmethod)):
            inner = self._describe(obj.__func__, out, depth + 1)
            return f"{type(obj).__name__}({inner})"
        if isinstance(obj, property):
            accessors = self._describe((obj.fget, obj.fset, obj.fdel), out, depth + 1)
            return f"property{accessors}"
        if isinstance(obj, types.MethodType):
            func = self._describe(obj.__func__, out, depth + 1)
            owner = obj.__self__
            bound = owner if isinstance(owner, type) else type(owner)
            return f"method({func};{self._describe(bound, out, depth + 1)})"
        if isinstance(obj, type):
            if _is_user_module(obj.__module__):
                out.append(self._node(obj))
                return f"<cls {obj.__qualname__}>"
            return _library_label(obj)
        if callable(obj):
            inner = _unwrap(obj)
            if inner is not obj:
                return "wrapped(" + self._describe(inner, out, depth + 1) + ")"
            if isinstance(obj, types.FunctionType):
                if _is_user_module(obj.__module__):
                    out.append(self._node(obj))
                    return f"<fn {obj.__qualname__}>"
                return _library_label(obj)
            if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)):
                return _library_label(obj)
        return self._describe_instance(obj, out, depth)

    def _describe_container(
        self,
        obj: tuple[Any, ...] | list[Any] | dict[Any, Any] | set[Any] | frozenset[Any],
        out: list[_Node],
        depth: int,
    ) -> str:
        key = id(obj)
        if key in self._values:
            memo = self._values[key]
            if memo is None:
                return "<recursive>"
            out.extend(memo[1])
            return memo[0]
        kind = type(obj).__qualname__
        if len(obj) > _MAX_CONTAINER:
            return f"{kind}#len{len(obj)}"  # huge: data rather than code, by size only
        self._keep.append(obj)
        if type(obj) in (list, tuple, dict) and _only_simple(obj):
            text = f"{kind}={obj!r}"  # fast path: repr in C, deterministic for these
            self._values[key] = (text, [])
            return text
        self._values[key] = None
        children: list[_Node] = []
        if isinstance(obj, dict):
            items = [
                self._describe(k, children, depth + 1)
                + ":"
                + self._describe(v, children, depth + 1)
                for k, v in list(obj.items())
            ]
            text = kind + "{" + ",".join(items) + "}"
        elif isinstance(obj, (set, frozenset)):
            described = []
            for item in list(obj):
                sub: list[_Node] = []
                described.append((self._describe(item, sub, depth + 1), sub))
            described.sort(key=lambda pair: pair[0])  # set order varies between runs
            for _, sub in described:
                children.extend(sub)
            text = kind + "{" + ",".join(t for t, _ in described) + "}"
        else:
            items = [self._describe(v, children, depth + 1) for v in list(obj)]
            text = kind + "(" + ",".join(items) + ")"
        self._values[key] = (text, children)
        out.extend(children)
        return text

    def _describe_instance(self, obj: object, out: list[_Node], depth: int) -> str:
        cls = type(obj)
        kind = self._describe(cls, out, depth + 1)
        if cls.__module__ == "logging":  # loggers: runtime state (levels) is not code
            return f"obj:{kind}:{getattr(obj, 'name', '')}"
        text: str | None = None
        if cls.__repr__ is not object.__repr__:
            try:
                text = repr(obj)
            except Exception:
                text = None
            if text is not None and _ADDRESS.search(text):
                text = None  # identity-based repr: not stable across runs
        if text is not None:
            return f"obj:{kind}:{text}"
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict) and _is_user_module(cls.__module__):
            return f"obj:{kind}:" + self._describe(dict(state), out, depth + 1)
        return f"obj:{kind}"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
