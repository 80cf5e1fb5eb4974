"""The explorer's data: frames encoded as differences, weights as int8, and decoded again.

Contract: :func:`build_payload` makes the JSON-ready dict the page embeds: the edges real in
at least one frame form the edge table (candidate id, source, target); frame 0 and each
later frame are differences (added / removed edge-table ids as gap-coded varints, and the
weights that changed, quantised to int8: ``q * scale / 127``, ``scale`` the largest
``|weight|``). :func:`decode_frames` reads them back as the page's JavaScript does: every
frame's real edge set exactly, every weight to within half a quantisation step.

>>> import numpy as np
>>> quantise(np.array([1.0, -0.5, 0.0]), 1.0).tolist()
[127, -64, 0]
"""
from __future__ import annotations

import base64
import math
from typing import Mapping

import numpy as np

from viz.explore.frames import ADDED, REMOVED, Frames
from viz.layout import columns, is_dynamic, node_positions
from viz.render import weight_range
from viz.sources import epoch_of
from viz.style import (
    ARC_HEIGHT,
    ARROW_AT,
    ARROW_MAX_EDGES,
    ARROW_SIZE,
    CHORD_BEND,
    DEAD_EDGE,
    DEAD_FACE,
    DEAD_MARK,
    LOOP_RADIUS,
    NEGATIVE,
    POSITIVE,
    RANKED_FROM,
    REF_PIXELS,
    ROLE_STYLE,
)
from wiring.picture import RING_CENTRE, STRONG_EDGES, group_names, groups, level_name
from wiring.lazy import lazy_module

torch = lazy_module("torch")       # imported on first use: --help needs only this module's names

FORMAT_VERSION = 1


Q_LEVELS = 127          # weights are shipped as int8 in [-127, 127] times scale / 127


def quantise(weight: np.ndarray, scale: float) -> np.ndarray:
    """``weight`` as int8 ``round(weight / scale * 127)``, clipped to [-127, 127]."""
    q = np.rint(np.asarray(weight, dtype=np.float64) / scale * Q_LEVELS)
    return np.clip(q, -Q_LEVELS, Q_LEVELS).astype(np.int8)


def _varints(values) -> bytes:
    """Unsigned LEB128 of each value (non-negative integers)."""
    v = np.asarray(values, dtype=np.uint64).reshape(-1)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.size, dtype=np.int64)
    rest = v >> np.uint64(7)
    while (rest > 0).any():
        nbytes += rest > 0
        rest >>= np.uint64(7)
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    rest = v.copy()
    for j in range(int(nbytes.max())):
        sel = nbytes > j
        more = (nbytes[sel] > j + 1).astype(np.uint8) << 7
        out[starts[sel] + j] = (rest[sel] & np.uint64(0x7F)).astype(np.uint8) | more
        rest[sel] >>= np.uint64(7)
    return out.tobytes()


def _gaps(sorted_ids: np.ndarray) -> bytes:
    """Strictly increasing ids as varints of ``id - previous - 1`` (previous -1 at first)."""
    ids = np.asarray(sorted_ids, dtype=np.int64)
    return _varints(np.diff(ids, prepend=-1) - 1)


def _read_varints(buf: np.ndarray, pos: int, n: int) -> tuple[np.ndarray, int]:
    """``n`` varints from ``buf[pos:]``; returns (values int64, position after)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64), pos
    chunk = buf[pos:pos + 10 * n]
    ends = np.flatnonzero(chunk < 0x80)
    if ends.size < n:
        raise ValueError("truncated varint data")
    end = int(ends[n - 1]) + 1
    chunk = chunk[:end].astype(np.int64)
    which = np.concatenate([[0], np.cumsum(chunk < 0x80)[:-1]])
    first = np.concatenate([[0], ends[:n - 1] + 1])
    shift = 7 * (np.arange(end) - first[which])
    values = np.zeros(n, dtype=np.int64)
    np.add.at(values, which, (chunk & 0x7F) << shift)
    return values, pos + end


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.buf = np.frombuffer(data, dtype=np.uint8)
        self.pos = 0

    def varint(self) -> int:
        values, self.pos = _read_varints(self.buf, self.pos, 1)
        return int(values[0])

    def ids(self, n: int) -> np.ndarray:
        gaps, self.pos = _read_varints(self.buf, self.pos, n)
        return np.cumsum(gaps + 1) - 1

    def int8(self, n: int) -> np.ndarray:
        if self.pos + n > self.buf.size:
            raise ValueError("truncated int8 data")
        out = self.buf[self.pos:self.pos + n].view(np.int8).copy()
        self.pos += n
        return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _node_array(values: np.ndarray) -> tuple[str, int]:
    """Node ids as little-endian uint16 (uint32 from 65,536 nodes), base64."""
    width = 2 if values.size == 0 or int(values.max()) < 65536 else 4
    return _b64(np.asarray(values, dtype="<u2" if width == 2 else "<u4").tobytes()), width


def build_payload(frames: Frames) -> dict:
    """The page's data: a JSON-able dict (see the module docstring).

    ``frames.blob`` (base64) holds, per frame, ``nA, gaps(A), int8 qA[nA], nR,
    gaps(R), nC, gaps(C), int8 qC[nC]`` (varints; A added, R removed, C weight
    changed, as sorted edge-table ids), frame ``i`` from byte ``offsets[i]`` to
    ``offsets[i + 1]``; frame 0 is the difference from an empty wiring.
    """
    n = int(frames.level.size)
    dynamic = is_dynamic(torch.as_tensor(frames.level), frames.attrs)
    pos = node_positions(torch.as_tensor(frames.level), torch.as_tensor(frames.role), dynamic=dynamic)
    col = columns(torch.as_tensor(frames.level), torch.as_tensor(frames.role)) if n else np.zeros(0, np.int64)
    scale = max((float(np.abs(w).max()) for w in frames.weight if w.size), default=0.0)
    scale = scale if scale > 0 and math.isfinite(scale) else 1.0
    blob = bytearray()
    offsets = [0]
    prev_ids = np.zeros(0, dtype=np.int64)
    prev_q = np.zeros(frames.src.size, dtype=np.int8)
    for ids, weight in zip(frames.real, frames.weight):
        ids = np.asarray(ids, dtype=np.int64)
        q = quantise(weight, scale)
        added = np.setdiff1d(ids, prev_ids, assume_unique=True)
        removed = np.setdiff1d(prev_ids, ids, assume_unique=True)
        kept_mask = np.isin(ids, prev_ids, assume_unique=True)
        kept, kept_q = ids[kept_mask], q[kept_mask]
        changed = kept_q != prev_q[kept]
        q_added = q[np.isin(ids, added, assume_unique=True)]
        blob += _varints([added.size]) + _gaps(added) + q_added.tobytes()
        blob += _varints([removed.size]) + _gaps(removed)
        blob += _varints([int(changed.sum())]) + _gaps(kept[changed]) + kept_q[changed].tobytes()
        offsets.append(len(blob))
        prev_q[ids] = q
        prev_ids = ids
    src, width = _node_array(frames.src)
    dst, _ = _node_array(frames.dst)
    counts = [int(np.asarray(r).size) for r in frames.real]
    lo, hi = weight_range(frames.weight)
    names = {code: name for code, (name, _, _) in ROLE_STYLE.items()}
    # [column, name, short name] of every picture (wiring.picture.level_name): the page names levels only by these
    col_labels, col_names = [], []
    if not dynamic:
        for c in np.unique(col):
            ids = np.flatnonzero(col == c)
            roles = frames.role[ids]
            col_names.append([int(c), level_name(int(c), roles), level_name(int(c), roles, short=True)])
            col_labels.append([int(c), f"{col_names[-1][1]} ({ids.size:,})"])
    else:  # the labels of the role groups (inputs | hidden | outputs), drawn at each group's mean x
        group = groups(frames.level, frames.role, dynamic=True)
        for g, name in zip(np.unique(group), group_names(frames.level, frames.role, dynamic=True)):
            ids = np.flatnonzero(group == g)
            col_labels.append([round(float(pos[ids, 0].mean()), 6), f"{name} ({ids.size:,})"])
    return {
        "format": "wiring-explorer", "version": FORMAT_VERSION,
        "title": frames.title, "subtitle": frames.subtitle,
        "nodes": {"count": n, "dynamic": bool(dynamic),
                  "x": [round(float(v), 6) for v in pos[:, 0]], "y": [round(float(v), 6) for v in pos[:, 1]],
                  "level": [int(v) for v in frames.level], "role": [int(v) for v in frames.role],
                  "columns": col_labels, "column_names": col_names,
                  "column": [int(v) for v in col] if not dynamic else []},
        "edges": {"count": int(frames.src.size), "width": width, "src": src, "dst": dst,
                  "cand": _b64(_gaps(frames.cand)), "candidates": int(frames.num_candidates)},
        "frames": {"count": len(frames), "steps": list(frames.steps), "k": counts,
                   # the epoch each frame's step lies in (viz.sources.epoch_of: the page does not reimplement it)
                   "epochs": [epoch_of(frames.metrics, step) for step in frames.steps],
                   "offsets": offsets, "blob": _b64(bytes(blob))},
        "weights": {"scale": scale, "levels": Q_LEVELS, "lo": lo, "hi": hi},
        "metrics": frames.metrics,
        "style": {"positive": POSITIVE, "negative": NEGATIVE, "added": ADDED, "removed": REMOVED,
                  "dead_face": DEAD_FACE, "dead_edge": DEAD_EDGE,
                  "roles": {str(code): [name, marker, colour] for code, (name, marker, colour) in ROLE_STYLE.items()},
                  "role_names": {str(k): v for k, v in names.items()},
                  "arc_height": ARC_HEIGHT, "chord_bend": CHORD_BEND, "loop_radius": LOOP_RADIUS,
                  "ring_centre": list(RING_CENTRE),
                  "arrow_max_edges": ARROW_MAX_EDGES, "arrow_at": ARROW_AT, "arrow_size": ARROW_SIZE,
                  "ref_pixels": REF_PIXELS, "ranked_from": RANKED_FROM, "strong": STRONG_EDGES,
                  "dead_mark": DEAD_MARK},
    }


def decode_frames(payload: Mapping) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Replay the shipped differences: per frame ``(candidate ids, source/target
    [2, k], weights)`` of its real edges, sorted by candidate id; weights are the
    dequantised ``q * scale / 127``. The page's JavaScript does the same."""
    edges, fr = payload["edges"], payload["frames"]
    u = int(edges["count"])
    dtype = "<u2" if edges["width"] == 2 else "<u4"
    src = np.frombuffer(base64.b64decode(edges["src"]), dtype=dtype).astype(np.int64)
    dst = np.frombuffer(base64.b64decode(edges["dst"]), dtype=dtype).astype(np.int64)
    cand = _Reader(base64.b64decode(edges["cand"])).ids(u)
    blob = base64.b64decode(fr["blob"])
    offsets = fr["offsets"]
    real = np.zeros(u, dtype=bool)
    q = np.zeros(u, dtype=np.int8)
    scale = float(payload["weights"]["scale"]) / int(payload["weights"]["levels"])
    out = []
    for i in range(int(fr["count"])):
        r = _Reader(blob[offsets[i]:offsets[i + 1]])
        n_added = r.varint()
        added = r.ids(n_added)
        q_added = r.int8(n_added)
        removed = r.ids(r.varint())
        n_changed = r.varint()
        changed = r.ids(n_changed)
        q_changed = r.int8(n_changed)
        if r.pos != r.buf.size:
            raise ValueError(f"frame {i}: {r.buf.size - r.pos} bytes left over")
        if real[added].any() or not real[removed].all() or not real[changed].all():
            raise ValueError(f"frame {i}: the differences do not fit the previous frame")
        real[removed] = False
        real[added] = True
        q[added] = q_added
        q[changed] = q_changed
        ids = np.flatnonzero(real)
        out.append((cand[ids], np.stack([src[ids], dst[ids]]), q[ids].astype(np.float64) * scale))
    return out
