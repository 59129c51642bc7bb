"""Pairing the predicted calls of a turn with its gold calls, whatever order either side lists them in.

Parallel calls are unordered (BFCL's checker takes them as a set), so neither a reward nor an evaluation metric may
change when a correct turn lists its calls in another order than the gold does. Rewards and eval both pair calls
here, so they agree on which predicted call answers which gold call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import networkx as nx


class Named(Protocol):
    """A call as pairing sees it: only its name (the score callback reads whatever else it needs)."""

    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=Named)
G = TypeVar("G", bound=Named)


def best_same_name_pairs(predicted: Sequence[P], gold: Sequence[G], score: Callable[[P, G], float]
                         ) -> list[tuple[int, int]]:
    """Index pairs (i, j), predicted[i].name = gold[j].name, each index used at most once: as many pairs as the names
    allow (Σ_name min(#predicted, #gold)), and among those the pairing with the largest Σ score(predicted[i], gold[j]).

    Solved exactly as a maximum-weight, maximum-cardinality bipartite matching (networkx's blossom algorithm), so it
    does not depend on the order of either list. Weights are shifted to be positive, which changes no comparison:
    every maximum-cardinality pairing has the same number of pairs. Pairs come in gold order.
    """
    edges = [(i, j, score(p, g)) for j, g in enumerate(gold) for i, p in enumerate(predicted) if p.name == g.name]
    if not edges:
        return []
    offset = 1.0 - min(0.0, min(weight for _, _, weight in edges))
    graph = nx.Graph()
    graph.add_weighted_edges_from((("predicted", i), ("gold", j), weight + offset) for i, j, weight in edges)
    pairs = []
    for a, b in nx.max_weight_matching(graph, maxcardinality=True):
        (_, i), (_, j) = (a, b) if a[0] == "predicted" else (b, a)
        pairs.append((i, j))
    return sorted(pairs, key=lambda pair: pair[1])
