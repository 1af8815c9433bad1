"""When a segmentation at a mapped position counts as the nodule."""

from __future__ import annotations

from lungai.followup.remeasure import MappedConfig


def test_size_and_distance_bounds() -> None:
    cfg = MappedConfig(min_found_mm=3.0, min_size_ratio=0.7, min_distance_mm=4.0, distance_per_diameter=0.3)
    assert cfg.accepts(10.0, 9.0, 3.9)
    assert not cfg.accepts(10.0, 6.9, 1.0)  # under 0.7 of the expected diameter: another structure
    assert not cfg.accepts(10.0, 9.0, 4.1)  # beyond max(4, 3) mm
    assert cfg.accepts(20.0, 18.0, 5.9)  # a larger nodule may lie up to 0.3 diameters away
    assert not cfg.accepts(20.0, 18.0, 6.1)
    assert not cfg.accepts(3.0, 2.9, 0.5)  # under 3 mm
    assert cfg.accepts(8.0, 12.5, 1.0)  # larger than expected is allowed (growth)...
    assert not cfg.accepts(8.0, 13.0, 1.0)  # ...up to 1.6 times the diameter (4 times the volume): a leak
