"""Mesh export and import: Wavefront .obj and binary .ply, with optional vertex colours.

Files are written atomically (a temporary file renamed into place), so a crash never leaves a
partial mesh under the final name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceflow.io import atomic_path


def _arrays(verts, faces, colors):
    v = np.asarray(verts.detach().cpu() if hasattr(verts, "detach") else verts, dtype=np.float64)
    f = np.asarray(faces.detach().cpu() if hasattr(faces, "detach") else faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"expected verts (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError("face indices out of range")
    c = None
    if colors is not None:
        c = np.asarray(colors.detach().cpu() if hasattr(colors, "detach") else colors, dtype=np.float64)
        if c.shape != v.shape:
            raise ValueError(f"colors must be (V, 3) like verts, got {c.shape}")
        c = np.clip(c, 0.0, 1.0)
    return v, f, c


def write_obj(path: str | Path, verts, faces, colors=None) -> Path:
    """Write (V, 3) vertices, (F, 3) 0-based faces and optional (V, 3) colours in [0, 1]
    (as the common ``v x y z r g b`` extension) to an .obj file."""
    v, f, c = _arrays(verts, faces, colors)
    rows = np.hstack([v, c]) if c is not None else v
    fmt = "v" + " %.6f" * rows.shape[1]
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("# written by faceflow\n")
        np.savetxt(fh, rows, fmt=fmt)
        np.savetxt(fh, f + 1, fmt="f %d %d %d")
    return Path(path)


def read_obj(path: str | Path):
    """Read vertices (V, 3), triangles (F, 3) and colours (V, 3) or None from an .obj file.
    Polygons are fan-triangulated; texture/normal indices are ignored."""
    verts, cols, faces = [], [], []
    with open(path) as fh:
        for line in fh:
            p = line.split()
            if not p:
                continue
            if p[0] == "v":
                verts.append([float(x) for x in p[1:4]])
                if len(p) >= 7:
                    cols.append([float(x) for x in p[4:7]])
            elif p[0] == "f":
                idx = [int(q.split("/")[0]) for q in p[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    c = np.asarray(cols) if cols and len(cols) == len(verts) else None
    return np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64).reshape(-1, 3), c


def write_ply(path: str | Path, verts, faces, colors=None) -> Path:
    """Write a binary little-endian .ply with float vertices, optional uchar RGB colours and
    triangle faces."""
    v, f, c = _arrays(verts, faces, colors)
    vdt = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if c is not None:
        vdt += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vrec = np.empty(len(v), dtype=vdt)
    vrec["x"], vrec["y"], vrec["z"] = v.T
    if c is not None:
        rgb = np.round(c * 255).astype(np.uint8)
        vrec["red"], vrec["green"], vrec["blue"] = rgb.T
    frec = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    frec["n"], frec["i"] = 3, f
    header = ["ply", "format binary_little_endian 1.0", "comment written by faceflow",
              f"element vertex {len(v)}", "property float x", "property float y", "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vrec.tobytes())
        fh.write(frec.tobytes())
    return Path(path)


def read_ply(path: str | Path):
    """Read what :func:`write_ply` writes: vertices (V, 3), faces (F, 3), colours (V, 3) or None."""
    with open(path, "rb") as fh:
        data = fh.read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary little-endian PLY is supported")
    nv = nf = 0
    props = []
    for line in header:
        p = line.split()
        if p[:2] == ["element", "vertex"]:
            nv = int(p[2])
        elif p[:2] == ["element", "face"]:
            nf = int(p[2])
        elif p[0] == "property" and p[1] != "list":
            props.append((p[2], {"float": "<f4", "uchar": "u1"}[p[1]]))
    vdt = np.dtype(props)
    vrec = np.frombuffer(data, dtype=vdt, count=nv, offset=end)
    frec = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=nf, offset=end + nv * vdt.itemsize)
    verts = np.stack([vrec["x"], vrec["y"], vrec["z"]], 1).astype(np.float64)
    cols = None
    if "red" in vdt.names:
        cols = np.stack([vrec["red"], vrec["green"], vrec["blue"]], 1) / 255.0
    return verts, frec["i"].astype(np.int64), cols
