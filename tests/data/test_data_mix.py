from __future__ import annotations

from qwen_tool.data.mix import allocate


def test_allocate_gives_the_leftover_records_to_the_largest_remainders():
    # 10 × (0.55, 0.45) = (5.5, 4.5): floors 5 + 4 leave one record; the remainders tie at 0.5, so the name decides.
    assert allocate(10, {"b": 0.45, "a": 0.55}) == {"b": 4, "a": 6}
    # 7 × (0.6, 0.3, 0.1) = (4.2, 2.1, 0.7): floors 4 + 2 + 0 leave one record, and c's remainder 0.7 is the largest.
    assert allocate(7, {"a": 0.6, "b": 0.3, "c": 0.1}) == {"a": 4, "b": 2, "c": 1}
    assert allocate(0, {"a": 1.0}) == {"a": 0}
