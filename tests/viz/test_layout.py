"""Tests for viz.layout: fixed positions, columns by level, dynamic wirings by role around a circle."""
import doctest

import numpy as np
import torch

import viz.layout as layout
from viz.layout import columns, is_dynamic, node_positions, positions_for
from wiring.graph import Wiring, dynamic_graph, static_graph


def wiring_of(g, index, attrs=None):
    index = torch.as_tensor(index)
    return Wiring(g.edge_index[:, index], torch.randn(index.numel()), g.level, g.role, None,
                  dict(attrs or {"static": g.static}))


def test_doctests():
    assert doctest.testmod(layout).failed == 0


def test_columns_are_levels_and_order_is_by_id():
    g = static_graph([2, 3, 3, 2])
    pos = node_positions(g.level, g.role)
    assert pos.shape == (10, 2)
    assert pos[:, 0].tolist() == g.level.tolist()
    for lvl in range(4):
        ids = (g.level == lvl).nonzero().flatten().tolist()
        ys = pos[ids, 1]
        assert np.all(np.diff(ys) < 0), "smallest id on top, ids downwards"
        assert np.all((ys > 0) & (ys < 1))
    assert np.allclose(pos[2:5, 1], [5 / 6, 0.5, 1 / 6])


def test_positions_are_fixed_and_independent_of_edges():
    g = static_graph([2, 3, 3, 2])
    a = wiring_of(g, [0, 5, 9, 20, 30])
    b = wiring_of(g, list(range(3, 25)))
    assert np.array_equal(positions_for(a), positions_for(b))
    assert np.array_equal(node_positions(g.level, g.role), node_positions(g.level.clone(), g.role.clone()))


def test_outputs_in_last_column():
    level = torch.tensor([0, 0, 1, 1, 2])
    role = torch.tensor([0, 0, 1, 2, 1])  # output 3 sits on level 1, below the hidden node 4
    assert columns(level, role).tolist() == [0, 0, 1, 3, 2]
    pos = node_positions(level, role)
    assert pos[3, 0] == pos[:, 0].max() and pos[3, 1] == 0.5
    # outputs already alone on the top level keep it
    g = static_graph([2, 2, 1])
    assert columns(g.level, g.role).tolist() == [0, 0, 1, 1, 2]


def test_dynamic_nodes_by_role_around_a_circle_of_hidden_nodes():
    """A recurrent wiring: inputs a column left (x = 0), the hidden nodes on a circle
    around (1, 0.5), the first on top, the outputs a column right (x = 2); the old
    layout put every node on one circle, inputs and outputs crowded among them."""
    g = dynamic_graph(6, inputs=2, outputs=1)    # 0, 1 inputs; 2..4 hidden; 5 output
    assert is_dynamic(g.level) and is_dynamic(g.level, {"static": False})
    pos = positions_for(wiring_of(g, [0, 1, 2], {"static": False}))
    hidden = pos[2:5]
    assert np.allclose(np.hypot(hidden[:, 0] - 1.0, hidden[:, 1] - 0.5), 0.5)
    assert np.allclose(pos[2], [1.0, 1.0])  # the first hidden node on top
    assert np.allclose(pos[:2], [[0.0, 0.75], [0.0, 0.25]]) and np.allclose(pos[5], [2.0, 0.5])
    assert len({tuple(p) for p in pos.round(6)}) == 6
    # no static attribute, all levels 0: the same layout
    assert np.allclose(positions_for(wiring_of(g, [0], {})), pos)


def test_static_attribute_wins():
    g = static_graph([2, 2])
    assert not is_dynamic(g.level, {"static": True})
    assert is_dynamic(g.level, {"static": False})
    assert not is_dynamic(g.level, {})
    assert node_positions(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)).shape == (0, 2)
