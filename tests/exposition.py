"""Prometheus text read back with ``prometheus_client``'s parser, keyed for assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]


def by_key(text: str) -> dict[Key, float]:
    """``{(sample name, labels): value}`` of every sample in ``text``; raises ``ValueError``
    on text the parser refuses and on a sample given twice."""
    found: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            if key in found:
                raise ValueError(f"{sample.name} {dict(sample.labels)} is given twice")
            found[key] = float(sample.value)
    return found
