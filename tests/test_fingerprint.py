"""Tests for lakehouse.fingerprint: code versions of asset functions.

Functions are built from source strings with ``exec`` into fresh module objects whose
source is registered in ``linecache`` the way IPython registers notebook cells, so
``inspect.getsource`` works on them exactly as it does on real notebook functions.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import linecache
import logging
import os
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.fingerprint import code_version, code_versions

_SEQ = itertools.count()
ROOT = Path(__file__).resolve().parents[1]


class Lab:
    """Creates throw-away user modules from source; forgets them afterwards."""

    def __init__(self) -> None:
        self.modules: list[str] = []
        self.files: list[str] = []

    def module(self, source: str, *, with_source: bool = True, name: str | None = None) -> Any:
        n = next(_SEQ)
        name = name or f"fp_user_mod_{n}"
        filename = f"<fp-cell-{n}>"
        source = textwrap.dedent(source)
        if with_source:  # what IPython does for every cell
            lines = source.splitlines(keepends=True)
            linecache.cache[filename] = (len(source), None, lines, filename)
            self.files.append(filename)
        module = types.ModuleType(name)
        module.__file__ = filename
        sys.modules[name] = module
        self.modules.append(name)
        exec(compile(source, filename, "exec"), module.__dict__)
        return module

    def fn(self, source: str, name: str = "f", **kwargs: Any) -> Any:
        return getattr(self.module(source, **kwargs), name)

    def close(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)
        for filename in self.files:
            linecache.cache.pop(filename, None)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as the_lab:
        yield the_lab


BASE = """
    import math

    SCALE = 3

    def f(rows, factor=2):
        total = 0
        for r in rows:
            if r > 0:
                total += r * factor
        return math.floor(total / SCALE)
"""


# ------------------------------------------------------------- formatting is ignored


def test_version_is_16_hex_chars_and_repeatable(lab: Lab) -> None:
    f = lab.fn(BASE)
    v = code_version(f)
    assert len(v) == 16
    int(v, 16)
    assert code_version(f) == v
    assert code_version(lab.fn(BASE)) == v  # a fresh copy of the same code


@pytest.mark.parametrize(
    "variant",
    [
        # comments and blank lines
        """
        import math

        # the scale used everywhere
        SCALE = 3


        def f(rows, factor=2):  # an asset
            # running sum

            total = 0
            for r in rows:   # each row

                if r > 0:
                    total += r * factor  # positive only
            return math.floor(total / SCALE)
        """,
        # a docstring, and a string used as a comment
        '''
        import math

        SCALE = 3

        def f(rows, factor=2):
            """Sum the positive rows.

            Returns:
                the floored, scaled total.
            """
            total = 0
            """a string statement is a no-op"""
            for r in rows:
                if r > 0:
                    total += r * factor
            return math.floor(total / SCALE)
        ''',
        # formatting: spacing, parentheses, quoting, line breaks, trailing commas
        """
        import math
        SCALE=3
        def f(rows,factor = 2):
            total=0
            for r in rows:
                if (r>0):
                    total+=(r*factor)
            return math.floor(
                (total / SCALE),
            )
        """,
        # a decorator whose arguments change (the asset spec, not the code)
        """
        import math

        def asset(*args, **kwargs):
            def register(fn):
                return fn
            return register

        SCALE = 3

        @asset(name="totals", engine="duckdb", partitions=["a", "b"])
        def f(rows, factor=2):
            total = 0
            for r in rows:
                if r > 0:
                    total += r * factor
            return math.floor(total / SCALE)
        """,
    ],
    ids=["comments-blank-lines", "docstrings", "formatting", "decorator"],
)
def test_cosmetic_edits_keep_the_version(lab: Lab, variant: str) -> None:
    base = code_version(lab.fn(BASE))
    assert code_version(lab.fn(variant)) == base
    # control: the same variant with a logic change must differ
    changed = variant.replace("r > 0", "r >= 0").replace("(r>0)", "(r>=0)")
    assert changed != variant
    assert code_version(lab.fn(changed)) != base


def test_decorator_arguments_do_not_matter(lab: Lab) -> None:
    template = """
        def asset(**kwargs):
            def register(fn):
                fn.spec = kwargs
                return fn
            return register

        @asset({args})
        def f(x):
            return x + 1
    """
    one = lab.fn(template.format(args="name='a'"))
    two = lab.fn(template.format(args="name='b', engine='duckdb'"))
    three = lab.fn(template.format(args="name='a'").replace("x + 1", "x + 2"))
    assert code_version(one) == code_version(two)
    assert code_version(one) != code_version(three)


def test_wrapping_decorator_fingerprints_the_innermost_function(lab: Lab) -> None:
    wrapped = lab.fn(
        """
        import functools

        def retry(times):
            def deco(fn):
                @functools.wraps(fn)
                def wrapper(*args, **kwargs):
                    return fn(*args, **kwargs)
                return wrapper
            return deco

        @retry(times=3)
        def f(x):
            return x * 2
        """
    )
    plain = lab.fn("def f(x):\n    return x * 2\n")
    other = lab.fn("def f(x):\n    return x * 3\n")
    assert wrapped.__wrapped__ is not wrapped
    assert code_version(wrapped) == code_version(plain)
    assert code_version(wrapped) != code_version(other)


# ------------------------------------------------------------ logic changes are seen


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("r > 0", "r < 0"),
        ("total += r * factor", "total += r + factor"),
        ("total = 0", "total = 1"),
        ("factor=2", "factor=3"),
        ("math.floor", "math.ceil"),
        ("def f(rows, factor=2):", "def f(rows, factor=2, extra=None):"),
        ("return math.floor(total / SCALE)", "return math.floor(total // SCALE)"),
        ("for r in rows:", "for r in reversed(rows):"),
    ],
)
def test_logic_changes_change_the_version(lab: Lab, old: str, new: str) -> None:
    assert old in BASE
    assert code_version(lab.fn(BASE)) != code_version(lab.fn(BASE.replace(old, new)))


def test_referenced_constant_change_changes_the_version(lab: Lab) -> None:
    module = lab.module(BASE)
    before = code_version(module.f)
    module.SCALE = 4  # same function object: the warm cache must not hide this
    assert code_version(module.f) != before
    module.SCALE = 3
    assert code_version(module.f) == before
    assert code_version(lab.fn(BASE.replace("SCALE = 3", "SCALE = 5"))) != before


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("COLUMNS = ['a', 'b']", "COLUMNS = ['a', 'c']"),
        ("MAPPING = {'x': 1}", "MAPPING = {'x': 2}"),
        ("LIMIT = 1.5", "LIMIT = 1.25"),
        ("FLAGS = frozenset({'p', 'q'})", "FLAGS = frozenset({'p', 'r'})"),
        ("PAIR = (1, None)", "PAIR = (1, True)"),
    ],
)
def test_container_constants_are_compared_by_value(lab: Lab, old: str, new: str) -> None:
    source = """
        COLUMNS = ['a', 'b']
        MAPPING = {'x': 1}
        LIMIT = 1.5
        FLAGS = frozenset({'p', 'q'})
        PAIR = (1, None)

        def f(row):
            return [row[c] for c in COLUMNS], MAPPING, LIMIT, FLAGS, PAIR
    """
    assert code_version(lab.fn(source)) == code_version(lab.fn(source))
    assert code_version(lab.fn(source)) != code_version(lab.fn(source.replace(old, new)))


def test_large_lookup_tables_are_compared_by_value(lab: Lab) -> None:
    module = lab.module("LOOKUP = {}\n\ndef f(key):\n    return LOOKUP.get(key)\n")
    module.LOOKUP = {i: f"v{i}" for i in range(50_000)}
    before = code_version(module.f)
    module.LOOKUP[31_337] = "changed"
    assert code_version(module.f) != before
    module.LOOKUP[31_337] = "v31337"
    assert code_version(module.f) == before


def test_default_argument_values_are_followed(lab: Lab) -> None:
    module = lab.module(
        """
        WINDOW = 7

        def f(rows, window=WINDOW):
            return rows[-window:]
        """
    )
    before = code_version(module.f)
    module.WINDOW = 8  # does not change f: the default was evaluated at def time
    assert code_version(module.f) == before
    module.f.__defaults__ = (30,)
    assert code_version(module.f) != before


HELPERS = """
    OFFSET = 10

    def inner(x):
        return x + OFFSET

    def middle(x):
        return inner(x) * 2

    def unrelated(x):
        return x - 1

    def f(rows):
        return [middle(r) for r in rows]
"""


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("return inner(x) * 2", "return inner(x) * 3"),  # a helper
        ("return x + OFFSET", "return x - OFFSET"),  # a helper's helper
        ("OFFSET = 10", "OFFSET = 11"),  # a constant read by a helper's helper
    ],
)
def test_helper_changes_change_the_version_transitively(lab: Lab, old: str, new: str) -> None:
    assert old in HELPERS
    assert code_version(lab.fn(HELPERS)) != code_version(lab.fn(HELPERS.replace(old, new)))


def test_rebinding_a_helper_changes_the_version(lab: Lab) -> None:
    module = lab.module(HELPERS)
    before = code_version(module.f)
    original = module.inner
    module.inner = lab.fn("def inner(x):\n    return x\n", name="inner")
    assert code_version(module.f) != before
    module.inner = original
    assert code_version(module.f) == before


def test_unrelated_global_change_keeps_the_version(lab: Lab) -> None:
    module = lab.module(HELPERS)
    before = code_version(module.f)
    module.unrelated = lab.fn("def unrelated(x):\n    return x * 100\n", name="unrelated")
    module.BRAND_NEW = [1, 2, 3]
    assert code_version(module.f) == before
    assert code_version(lab.fn(HELPERS.replace("return x - 1", "return x - 2"))) == before
    # control: the same kind of edit to a used helper does change it
    assert code_version(lab.fn(HELPERS.replace("* 2", "* 4"))) != before


MUTUAL = """
    def is_even(n):
        return True if n == 0 else is_odd(n - 1)

    def is_odd(n):
        return False if n == 0 else is_even(n - 1)

    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)
"""


def test_mutual_recursion_terminates_and_is_tracked(lab: Lab) -> None:
    module = lab.module(MUTUAL)
    even, odd = code_version(module.is_even), code_version(module.is_odd)
    assert even != odd
    assert code_version(module.fact) == code_version(lab.module(MUTUAL).fact)
    assert code_version(lab.module(MUTUAL).is_even) == even
    changed = lab.module(MUTUAL.replace("False if n == 0", "False if n <= 0"))
    assert code_version(changed.is_even) != even  # even calls odd, which changed
    assert code_version(changed.is_odd) != odd


def test_batch_equals_single_calls_in_any_order(lab: Lab) -> None:
    module = lab.module(MUTUAL + HELPERS)
    fns = [module.is_even, module.is_odd, module.fact, module.f, module.middle]
    single = {fn: code_version(fn) for fn in fns}
    assert code_versions(fns) == single
    assert code_versions(list(reversed(fns))) == single


def test_classes_are_followed(lab: Lab) -> None:
    source = """
        from dataclasses import dataclass

        RATE = 2

        @dataclass(frozen=True)
        class Scaler:
            factor: int = 3

            def apply(self, x):
                return x * self.factor * RATE

        def f(rows):
            return [Scaler().apply(r) for r in rows]
    """
    base = code_version(lab.fn(source))
    assert code_version(lab.fn(source)) == base
    assert code_version(lab.fn(source.replace("factor: int = 3", "factor: int = 4"))) != base
    assert code_version(lab.fn(source.replace("x * self.factor", "x + self.factor"))) != base
    module = lab.module(source)
    module.RATE = 5  # read by a method of a class the asset uses
    assert code_version(module.f) != base


def test_class_members_via_descriptors(lab: Lab) -> None:
    source = """
        import functools

        class Model:
            @functools.cached_property
            def weight(self):
                return 2

            @property
            def bias(self):
                return 1

            @staticmethod
            def link(x):
                return x

        def f(x):
            m = Model()
            return m.link(x) * m.weight + m.bias
    """
    base = code_version(lab.fn(source))
    assert code_version(lab.fn(source)) == base
    for old, new in [("return 2", "return 3"), ("return 1", "return 0"), ("return x", "return -x")]:
        assert code_version(lab.fn(source.replace(old, new))) != base, old


def test_golden_version() -> None:
    """Pins the algorithm: a change here re-runs every asset of every user.

    If the change is intended, bump ``_SCHEME`` in lakehouse/fingerprint.py and update
    the expected value. The value is the same on Python 3.10 to 3.13.
    """
    with Lab() as the_lab:
        f = the_lab.fn(
            """
            import json
            from dataclasses import dataclass

            RATE = 3

            @dataclass(frozen=True)
            class Rule:
                limit: int = 2

                def ok(self, x: int) -> bool:
                    return x > self.limit

            def helper(x, *a, k=1, **kw):
                return abs(x) * RATE + len(f"{x!r:>10}")

            def f(rows: list[int], factor=2) -> str:
                \"\"\"Docstring.\"\"\"
                out = [helper(r) for r in rows if Rule().ok(r)]
                g = lambda q: q**2
                return json.dumps([g(o) for o in out])
            """
        )
        assert code_version(f) == GOLDEN


GOLDEN = "68a274aad7b8e16b"


def test_user_module_attribute_chains_are_followed(lab: Lab) -> None:
    helpers = lab.module("def clean(x):\n    return x.strip()\n")
    user = lab.module(f"import {helpers.__name__} as h\n\ndef f(x):\n    return h.clean(x)\n")
    before = code_version(user.f)
    helpers.clean = lab.fn("def clean(x):\n    return x.lower()\n", name="clean")
    assert code_version(user.f) != before


def test_library_references_are_by_name_and_stable(lab: Lab) -> None:
    source = """
        import json
        import logging
        import threading
        from collections import OrderedDict

        log = logging.getLogger("fp.test")
        LOCK = threading.Lock()

        def f(x):
            log.debug("x")
            with LOCK:
                return json.dumps(OrderedDict(x=x))
    """
    module = lab.module(source)
    before = code_version(module.f)
    assert code_version(lab.fn(source)) == before
    # runtime state of library objects is not code
    module.log.setLevel(logging.ERROR)
    with module.LOCK:
        assert code_version(module.f) == before
    assert code_version(lab.fn(source.replace("json.dumps", "json.loads"))) != before


# ------------------------------------------------ closures, lambdas, partials, no source


def test_closure_over_a_constant(lab: Lab) -> None:
    module = lab.module(
        """
        def make(k):
            def scaled(x):
                return x * k
            return scaled
        """
    )
    assert code_version(module.make(3)) == code_version(module.make(3))
    assert code_version(module.make(3)) != code_version(module.make(4))
    assert code_version(module.make((1, "a"))) != code_version(module.make((1, "b")))


def test_lambdas(lab: Lab) -> None:
    base = code_version(lab.fn("f = lambda x: x + 1\n"))
    assert code_version(lab.fn("f = lambda x: (x+1)  # one more\n")) == base
    assert code_version(lab.fn("f = lambda x: x + 2\n")) != base
    assert code_version(lab.fn("f = lambda y: y + 1\n")) != base
    module = lab.module("N = 1\nf = lambda x: x + N\n")
    before = code_version(module.f)
    module.N = 2
    assert code_version(module.f) != before
    # lambdas sharing a line, or inside a larger expression, are found in the source
    pair = lab.module("f, g = lambda x: x + 1, lambda x: x - 1\n")
    assert code_version(pair.f) != code_version(pair.g)
    if sys.version_info >= (3, 11):  # needs column positions in code objects
        assert code_version(pair.f) == base
        assert code_version(pair.g) == code_version(lab.fn("f = lambda x: x - 1\n"))
    nested = lab.module(
        """
        HANDLERS = dict(
            inc=lambda x: x + 1,  # a comment
            dec=lambda x: x - 1,
        )
        """
    )
    assert code_version(nested.HANDLERS["inc"]) == base
    assert code_version(nested.HANDLERS["dec"]) == code_version(lab.fn("f = lambda x: x - 1\n"))


def test_awkward_sources(lab: Lab) -> None:
    # a method whose multi-line string starts at column 0 (textwrap.dedent cannot help)
    source = '''
class Query:
    def sql(self):
        return """
select *
from t
"""
'''
    base = code_version(lab.module(source).Query.sql)
    commented = source.replace("def sql(self):", "def sql(self):  # the query")
    assert code_version(lab.module(commented).Query.sql) == base
    assert code_version(lab.module(source.replace("from t", "from u")).Query.sql) != base
    # decorators spread over several lines, async functions, keyword-only parameters
    source = """
        def tag(**kw):
            return lambda fn: fn

        @tag(
            name="x",
        )
        async def f(a, *rest, key=None, **extra):
            return [a, rest, key, extra]
    """
    base = code_version(lab.fn(source))
    assert code_version(lab.fn(source.replace('name="x"', 'name="y"'))) == base
    assert code_version(lab.fn(source.replace("key=None", "key=1"))) != base


def test_fast_bytecode_scan_matches_dis() -> None:
    import ast
    import dataclasses
    import json

    from lakehouse import fingerprint

    checked = 0
    for module in (ast, dataclasses, inspect, json, textwrap, fingerprint):
        for value in vars(module).values():
            candidates = [value, *vars(value).values()] if isinstance(value, type) else [value]
            for fn in candidates:
                if isinstance(fn, types.FunctionType):
                    code = fn.__code__
                    fast = fingerprint._global_refs(code)
                    assert fast == fingerprint._global_refs(code, fast=False), fn
                    checked += 1
    assert checked > 100


def test_partials(lab: Lab) -> None:
    f = lab.fn("def f(x, y, scale=1):\n    return (x + y) * scale\n")
    g = lab.fn("def f(x, y, scale=1):\n    return (x - y) * scale\n")
    base = code_version(functools.partial(f, 1))
    assert code_version(functools.partial(f, 1)) == base
    assert code_version(functools.partial(f, 2)) != base
    assert code_version(functools.partial(f, 1, scale=2)) != base
    assert code_version(functools.partial(g, 1)) != base
    assert code_version(functools.partial(f, 1)) != code_version(f)


def test_bound_methods_and_callables(lab: Lab) -> None:
    module = lab.module(
        """
        class Job:
            def run(self, x):
                return x + 1

        class Other:
            def run(self, x):
                return x + 2
        """
    )
    assert code_version(module.Job().run) == code_version(module.Job().run)
    assert code_version(module.Job().run) != code_version(module.Other().run)
    assert len(code_version(len)) == 16  # a builtin: by name


NO_SOURCE = '''
    LIMIT = 5

    def helper(v):
        return v * 2

    def f(rows):
        """Docstring."""
        def keep(r):
            return r < LIMIT and r in {"a", "b", "c"}
        return [helper(r) for r in rows if keep(r)]
'''


def test_functions_without_source_get_stable_versions(lab: Lab) -> None:
    module = lab.module(NO_SOURCE, with_source=False)
    with pytest.raises((OSError, TypeError)):
        inspect.getsource(module.f)
    base = code_version(module.f)
    assert code_version(module.f) == base
    assert code_version(lab.fn(NO_SOURCE, with_source=False)) == base
    # docstrings and comments are not part of it either
    variant = NO_SOURCE.replace('"""Docstring."""', '"""Another docstring."""  # note')
    assert code_version(lab.fn(variant, with_source=False)) == base
    # but logic, helpers and constants are
    for old, new in [
        ("r < LIMIT", "r <= LIMIT"),
        ('"c"}', '"d"}'),
        ("v * 2", "v * 3"),
        ("LIMIT = 5", "LIMIT = 6"),
    ]:
        changed = lab.fn(NO_SOURCE.replace(old, new), with_source=False)
        assert code_version(changed) != base, (old, new)


def test_made_up_file_names_read_their_source_from_linecache_only(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``exec`` code under ``<name>``: its source is whatever ``linecache.getlines``
    serves for that name (doctest patches it, IPython fills its cache), and without any
    there is nothing for ``inspect`` to find, so it is not asked (it is slow)."""
    import lakehouse.fingerprint as fingerprint

    source = "def f(x):\n    return x + 1\n"
    asked: list[object] = []
    real_getsource = inspect.getsource

    def counting_getsource(obj: object) -> str:
        asked.append(obj)
        return real_getsource(obj)

    monkeypatch.setattr(fingerprint.inspect, "getsource", counting_getsource)
    bare: dict[str, Any] = {}
    exec(compile(source, "<fp-no-source>", "exec"), bare)
    without_source = code_version(bare["f"])
    assert asked == []
    assert without_source == code_version(lab.fn(source, with_source=False))

    served = {"<fp-served>": source, "<fp-served-2>": source.replace("1\n", "1  # one\n")}
    real_getlines = linecache.getlines

    def patched_getlines(filename: str, module_globals: Any = None) -> list[str]:
        if filename in served:
            return served[filename].splitlines(keepends=True)
        return real_getlines(filename, module_globals)

    monkeypatch.setattr(linecache, "getlines", patched_getlines)
    found = []
    for filename in served:
        ns: dict[str, Any] = {}
        exec(compile(served[filename], filename, "exec"), ns)
        found.append(code_version(ns["f"]))
    # read from source: the comment does not count, and it is the version from source
    assert found[0] == found[1] == code_version(lab.fn(source))
    assert found[0] != without_source


def test_versions_are_stable_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import linecache, sys, types
        from lakehouse.fingerprint import code_version

        SOURCE = '''
        TAGS = {"red", "green", "blue", "cyan"}
        NAMES = frozenset({"x", "y", "z"})

        def f(row):
            return row in TAGS or row in NAMES or row in {"p", "q", "r", "s"}
        '''
        out = []
        for with_source in (True, False):
            name = f"fp_proc_{with_source}"
            filename = f"<fp-proc-{with_source}>"
            if with_source:
                lines = SOURCE.splitlines(True)
                linecache.cache[filename] = (len(SOURCE), None, lines, filename)
            module = types.ModuleType(name)
            module.__file__ = filename
            sys.modules[name] = module
            exec(compile(SOURCE, filename, "exec"), module.__dict__)
            out.append(code_version(module.f))
        print(",".join(out))
        """
    )
    path = tmp_path / "versions.py"
    path.write_text(script)
    results = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        proc = subprocess.run(
            [sys.executable, str(path)], env=env, capture_output=True, text=True, check=True
        )
        results.add(proc.stdout.strip())
    assert len(results) == 1, results


# ------------------------------------------------------------------------- property


def _expressions(names: list[str]) -> st.SearchStrategy[Any]:
    leaf = st.one_of(st.sampled_from(names), st.integers(0, 9).map(str))
    return st.recursive(
        leaf,
        lambda sub: st.tuples(sub, st.sampled_from(["+", "-", "*"]), sub),
        max_leaves=6,
    )


@st.composite
def _bodies(draw: st.DrawFn) -> list[tuple[str, Any]]:
    names = ["a", "b"]
    statements: list[tuple[str, Any]] = []
    for i in range(draw(st.integers(0, 3))):
        statements.append((f"v{i}", draw(_expressions(names))))
        names.append(f"v{i}")
    statements.append(("return", draw(_expressions(names))))
    return statements


def _render(expr: Any, noise: st.DataObject | None) -> str:
    if isinstance(expr, str):
        if noise is not None and noise.draw(st.booleans()):
            return f"({expr})"
        return expr
    left, op, right = expr
    space = " " if noise is None else noise.draw(st.sampled_from(["", " ", "  "]))
    return f"({_render(left, noise)}{space}{op}{space}{_render(right, noise)})"


def _source(body: list[tuple[str, Any]], noise: st.DataObject | None) -> str:
    lines = ["def f(a, b):"]
    if noise is not None and noise.draw(st.booleans()):
        lines.append('    """' + noise.draw(st.text("xyz ", max_size=10)) + '"""')
    for target, expr in body:
        if noise is not None and noise.draw(st.booleans()):
            lines.append(noise.draw(st.sampled_from(["", "    # a comment", "   "])))
        code = _render(expr, noise)
        line = f"    return {code}" if target == "return" else f"    {target} = {code}"
        if noise is not None and noise.draw(st.booleans()):
            line += "  # trailing comment"
        lines.append(line)
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(body=_bodies(), other=_bodies(), noise=st.data())
def test_random_arithmetic_bodies(body: Any, other: Any, noise: st.DataObject) -> None:
    with Lab() as the_lab:
        canonical = code_version(the_lab.fn(_source(body, None)))
        # equal bodies → equal versions, also built and fingerprinted separately
        assert code_version(the_lab.fn(_source(body, None))) == canonical
        # whitespace / comment / docstring / parenthesis variations → equal versions
        assert code_version(the_lab.fn(_source(body, noise))) == canonical
        # different logic → different versions
        if body != other:
            assert code_version(the_lab.fn(_source(other, None))) != canonical


# ------------------------------------------------------------------------- notebook


@pytest.fixture
def ipython_shell() -> Iterator[Any]:
    """An in-process IPython shell, as a Jupyter kernel runs cells; undone afterwards."""
    pytest.importorskip(
        "IPython",
        reason="IPython is not installed (pip install ipython): cannot simulate a notebook",
    )
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    created = not InteractiveShell.initialized()
    main_module = sys.modules["__main__"]  # IPython replaces it with its user module
    config = Config()
    config.HistoryManager.enabled = False
    try:
        yield InteractiveShell.instance(config=config)
    finally:
        if created:
            InteractiveShell.clear_instance()
            sys.modules["__main__"] = main_module


def test_notebook_cells_with_ipython(ipython_shell: Any) -> None:
    shell = ipython_shell

    def run(cell: str) -> Any:
        result = shell.run_cell(textwrap.dedent(cell), store_history=True)  # as Jupyter does
        result.raise_error()
        return shell.user_ns.get("nb_asset")

    setup = "NB_SCALE = 2\n"
    cell = """
        def nb_helper(x):
            return x * NB_SCALE

        def nb_asset(rows):
            return [nb_helper(r) for r in rows]
    """
    run(setup)
    first = run(cell)
    assert "nb_asset" in inspect.getsource(first)  # the cell source is in linecache
    base = code_version(first)

    commented = run(cell.replace("def nb_asset(rows):", "def nb_asset(rows):  # re-run"))
    assert commented is not first
    assert code_version(commented) == base

    changed = run(cell.replace("x * NB_SCALE", "x + NB_SCALE"))
    assert code_version(changed) != base

    klass = """
        class NbRule:
            def apply(self, x):
                return x > 1

        def nb_asset(rows):
            return [r for r in rows if NbRule().apply(r)]
    """
    with_class = code_version(run(klass))
    assert code_version(run(klass.replace("x > 1", "x > 1  # strict"))) == with_class
    assert code_version(run(klass.replace("x > 1", "x >= 1"))) != with_class

    run(cell)
    assert code_version(shell.user_ns["nb_asset"]) == base
    run("NB_SCALE = 3\n")  # another cell rebinds a constant the helper reads
    assert code_version(shell.user_ns["nb_asset"]) != base
    run(setup)
    assert code_version(shell.user_ns["nb_asset"]) == base


# ---------------------------------------------------------------------------- speed


def test_warm_versions_of_fifty_assets_are_cheap(lab: Lab) -> None:
    parts = ["import math", "RATE = 3", "def shared(x):\n    return math.sqrt(abs(x)) * RATE"]
    for i in range(50):
        parts.append(
            f"def asset_{i}(rows, k={i}):\n"
            f"    '''Asset {i}.'''\n"
            f"    return [shared(r) + k for r in rows if r % {i + 2}]"
        )
    module = lab.module("\n\n".join(parts) + "\n")
    fns = [getattr(module, f"asset_{i}") for i in range(50)]
    cold = code_versions(fns)
    assert len(set(cold.values())) == 50
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        warm = code_versions(fns)
        best = min(best, time.perf_counter() - start)
    assert warm == cold
    assert best < 0.030, f"warm code versions of 50 assets took {best * 1000:.1f} ms"
