"""The asset graph: validation, topological order and selection (pure, layer 1).

>>> from lakehouse.assets import AssetSpec
>>> a = AssetSpec("a", None, lambda: None)
>>> b = AssetSpec("b", None, lambda a: None, deps=("a",))
>>> g = AssetGraph([b, a])
>>> g.order
('a', 'b')
>>> g.select("a+")
['a', 'b']
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable, Sequence

from .assets import AssetInput, AssetSpec
from .errors import CycleError, DuplicateAssetError, UnknownAssetError


class AssetGraph:
    """A validated DAG of asset specs.

    Attributes:
        specs: spec by key, in topological order.
        order: keys in topological order (ties broken by name, so it is stable).
        parents: upstream keys of each asset (inputs, then deps).
        children: downstream keys of each asset.
        inputs: for each asset, its inputs with the upstream reference resolved to a key.

    Raises:
        DuplicateAssetError: two different definitions share a key (names both places).
        UnknownAssetError: an upstream names no asset (suggests the closest name).
        CycleError: the graph has a cycle (names the cycle path).
    """

    def __init__(self, specs: Iterable[AssetSpec]) -> None:
        by_key: dict[str, AssetSpec] = {}
        for spec in specs:
            key = spec.key
            other = by_key.get(key)
            if other is not None and other is not spec:
                raise DuplicateAssetError(
                    f"defined twice: at {other.defined_at} and at {spec.defined_at}",
                    asset=key,
                    hint="rename one of them with name=... or namespace=...",
                )
            by_key[key] = spec
        by_name: dict[str, list[str]] = {}  # filled on the first reference that is not a key

        # One pass resolves every upstream and counts in-degrees; a second (Kahn's
        # algorithm, ready assets taken by name) orders them.
        parents_of: dict[str, tuple[str, ...]] = {}
        inputs_of: dict[str, tuple[tuple[AssetInput, str], ...]] = {}
        children: dict[str, list[str]] = {k: [] for k in by_key}
        resolve = self._resolve
        for key, spec in by_key.items():
            parents: list[str] = []
            if spec.inputs:
                resolved_inputs = []
                for inp in spec.inputs:
                    ref = inp.asset
                    up = ref if ref in by_key else resolve(ref, spec, by_key, by_name)
                    resolved_inputs.append((inp, up))
                    if up not in parents:
                        parents.append(up)
                inputs_of[key] = tuple(resolved_inputs)
            else:
                inputs_of[key] = ()
            for ref in spec.deps:
                up = ref if ref in by_key else resolve(ref, spec, by_key, by_name)
                if up not in parents:
                    parents.append(up)
            parents_of[key] = tuple(parents)
            for up in parents:
                children[up].append(key)
        self.parents: dict[str, tuple[str, ...]] = parents_of
        self.inputs: dict[str, tuple[tuple[AssetInput, str], ...]] = inputs_of
        self.order: tuple[str, ...] = self._toposort(by_key, children)
        self.children: dict[str, tuple[str, ...]] = {
            k: tuple(sorted(v)) if len(v) > 1 else tuple(v) for k, v in children.items()
        }
        self.specs: dict[str, AssetSpec] = {k: by_key[k] for k in self.order}
        self._position = {k: i for i, k in enumerate(self.order)}

    # -- construction helpers -------------------------------------------------------

    @staticmethod
    def _resolve(
        ref: str, spec: AssetSpec, by_key: dict[str, AssetSpec], by_name: dict[str, list[str]]
    ) -> str:
        if ref in by_key:
            return ref
        if spec.namespace and f"{spec.namespace}/{ref}" in by_key:
            return f"{spec.namespace}/{ref}"
        if not by_name:
            for key, other in by_key.items():
                by_name.setdefault(other.name, []).append(key)
        candidates = by_name.get(ref, [])
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise UnknownAssetError(
                f"upstream {ref!r} is ambiguous: {sorted(candidates)}",
                asset=spec.key,
                hint=f"name it with its namespace, e.g. ins={{'{ref}': '{sorted(candidates)[0]}'}}",
            )
        close = difflib.get_close_matches(ref, list(by_key) + list(by_name), n=1, cutoff=0.5)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else "declare it with @lh.asset or pass it in assets="
        )
        raise UnknownAssetError(f"upstream {ref!r} is not an asset", asset=spec.key, hint=hint)

    def _toposort(
        self, by_key: dict[str, AssetSpec], children: dict[str, list[str]]
    ) -> tuple[str, ...]:
        parents = self.parents
        indegree = {k: len(ps) for k, ps in parents.items()}
        ready = [k for k, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            k = heapq.heappop(ready)
            order.append(k)
            for c in children[k]:
                indegree[c] -= 1
                if indegree[c] == 0:
                    heapq.heappush(ready, c)
        if len(order) != len(by_key):
            remaining = {k for k, d in indegree.items() if d > 0}
            cycle = self._find_cycle(remaining)
            raise CycleError(
                "the assets form a cycle: " + " -> ".join(cycle),
                asset=cycle[0],
                hint="remove one of these upstream references",
            )
        return tuple(order)

    def _find_cycle(self, nodes: set[str]) -> list[str]:
        # Every node left has a parent that is also left: walk parents until a repeat.
        start = min(nodes)
        path: list[str] = []
        seen: dict[str, int] = {}
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = min(p for p in self.parents[node] if p in nodes)
        cycle = [*path[seen[node] :], node]
        cycle.reverse()  # upstream -> downstream
        return cycle

    # -- queries --------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self.specs

    def __len__(self) -> int:
        return len(self.specs)

    def key_of(self, ref: str) -> str:
        """Resolve a user-typed name (key or bare name) to a key, or raise."""
        ref = ref.strip("/")
        if ref in self.specs:
            return ref
        matches = [k for k, s in self.specs.items() if s.name == ref]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UnknownAssetError(
                f"{ref!r} is ambiguous: {sorted(matches)}", asset=ref, hint="use the namespaced key"
            )
        close = difflib.get_close_matches(ref, list(self.specs), n=1, cutoff=0.5)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"known assets: {', '.join(list(self.specs)[:10])}"
        )
        raise UnknownAssetError("no such asset", asset=ref, hint=hint)

    def ancestors(self, key: str) -> list[str]:
        """All transitive upstreams of ``key``, in topological order."""
        return self._closure(key, self.parents)

    def descendants(self, key: str) -> list[str]:
        """All transitive downstreams of ``key``, in topological order."""
        return self._closure(key, self.children)

    def _closure(self, key: str, edges: dict[str, tuple[str, ...]]) -> list[str]:
        seen: set[str] = set()
        stack = list(edges[key])
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(edges[k])
        return self.sort(seen)

    def sort(self, keys: Iterable[str]) -> list[str]:
        """``keys`` in topological order."""
        return sorted(set(keys), key=self._position.__getitem__)

    def select(self, selection: str | Sequence[str] | None) -> list[str]:
        """Keys chosen by a selection, in topological order.

        ``None`` is everything; a name; ``"name+"`` adds its downstream; ``"+name"``
        adds its upstream; ``"+name+"`` both; a list unions its items.
        """
        if selection is None:
            return list(self.order)
        items = [selection] if isinstance(selection, str) else list(selection)
        chosen: set[str] = set()
        for item in items:
            if not isinstance(item, str):
                raise UnknownAssetError(
                    f"selection item {item!r} is not a string", hint="select='name' or ['a', 'b+']"
                )
            text = item.strip()
            up = text.startswith("+")
            down = text.endswith("+")
            key = self.key_of(text.strip("+"))
            chosen.add(key)
            if up:
                chosen.update(self.ancestors(key))
            if down:
                chosen.update(self.descendants(key))
        return self.sort(chosen)

    def edges(self) -> list[tuple[str, str]]:
        """``(upstream, downstream)`` pairs in topological order of the downstream."""
        return [(p, k) for k in self.order for p in self.parents[k]]
