from pathlib import Path

from audit.evaluation.data import SampleTable
from audit.evaluation.groups import build_layout, slot_matrix


def test_intersections_keep_empty_cells():
    table = SampleTable(
        Path("m.csv"), ["a", "b", "c"], [0, 1, 0], {"cam": ["A", "A", "B"], "ink": ["thin", "thick", "thin"]}
    )
    layout = build_layout(table, [["cam", "ink"]])
    names = layout.describe()
    assert names[0] is None
    assert ("cam×ink", "B×thick") in names  # no sample, still a slot
    assert layout.num_slots == 1 + 2 + 2 + 4
    slots = slot_matrix(table, layout)
    assert slots.shape == (3, 4)
    assert [names[s] for s in slots[2].tolist()] == [None, ("cam", "B"), ("ink", "thin"), ("cam×ink", "B×thin")]
