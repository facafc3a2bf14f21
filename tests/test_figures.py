"""Pictures that read: the colour scale (nice_scale, the no-motion threshold), the legends, titled
figures (faceflow.render.figures) and the surface grid preview (faceflow.render.overlay)."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

from faceflow.render.figures import caption, flow_figure, hstack, legend_2d, legend_3d, legend_strip, text_panel
from faceflow.render.flowcolor import flow2d_to_rgb, flow3d_to_rgb, nice_scale
from faceflow.render.overlay import draw_surface_grid, surface_grid


@pytest.mark.parametrize("x, want", [(0.83, 1.0), (1.0, 1.0), (1.2, 2.0), (2.1, 2.5), (3.0, 5.0), (7.0, 10.0),
                                     (0.012, 0.02), (140.0, 200.0), (0.0, 1.0), (float("nan"), 1.0)])
def test_nice_scale_rounds_up_to_1_2_2p5_5(x, want):
    assert nice_scale(x) == pytest.approx(want)


def test_motion_below_the_threshold_shows_as_none():
    f = np.array([[[0.05, 0.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.08, 0.0], [2.0, 0.0, 0.0]]])
    c3 = flow3d_to_rgb(f, max_magnitude=2.0, min_magnitude=0.1)[0]
    c2 = flow2d_to_rgb(f, max_magnitude=2.0, min_magnitude=0.1)[0]
    assert (c3[0] == 0).all() and (c3[2] == 0).all()           # 3D: black = no motion
    assert (c2[0] == 255).all() and (c2[2] == 255).all()       # 2D: white = no motion
    assert c3[1].max() > 0 and c2[1].min() < 255               # above the threshold: drawn
    # without a threshold the 0.05 px pixel is coloured (the speckle the threshold removes)
    assert flow3d_to_rgb(f, max_magnitude=0.1)[0][0].max() > 100


def test_legend_3d_bar_goes_from_vivid_toward_to_pale_away_and_disc_from_black_centre():
    leg = legend_3d(120).astype(float) / 255
    s = 120
    disc_centre = leg[s // 2, s // 2]
    assert disc_centre.max() < 0.1                              # no motion: black
    # the bar's column: find the reddest column right of the disc
    right = leg[:, s:]
    col = int(np.argmax((right[..., 0] - right[..., 2]).mean(0)))
    bar = right[:, col]
    rows = np.flatnonzero(np.abs(bar - 1).sum(-1) > 1e-3)      # the non-white part
    top, bottom = bar[rows[0] + 1], bar[rows[-1] - 1]
    sat = lambda rgb: colorsys.rgb_to_hsv(*rgb)[1]
    assert sat(top) > 0.9 and sat(bottom) < 0.15                 # toward the camera vivid, away pale
    assert colorsys.rgb_to_hsv(*top)[0] < 0.02 or colorsys.rgb_to_hsv(*top)[0] > 0.98  # motion to the right: red


def test_legend_2d_is_the_wheel_white_in_the_centre():
    leg = legend_2d(96)
    assert leg.shape == (96, 96, 3)
    assert (leg[48, 48] > 240).all()
    # right of centre red, left of centre cyan (hue of the 2D code)
    r, lft = leg[48, 70].astype(int), leg[48, 26].astype(int)
    assert r[0] > r[1] + 60 and r[0] > r[2] + 60
    assert lft[1] > lft[0] + 60 and lft[2] > lft[0] + 60


def test_flow_figure_keeps_the_coded_pixels_and_adds_title_and_legend():
    y, x = np.mgrid[0:64, 0:80]
    f = np.stack([(x - 40) / 8.0, (y - 32) / 8.0, np.ones_like(x) * 0.5], -1)
    mask = (x - 40) ** 2 + (y - 32) ** 2 < 28 ** 2
    fig = flow_figure(f, mask, "3d", 5.0, 0.1, title="T")
    code = flow3d_to_rgb(f, mask, 5.0, 0.1)
    band = max(16, min(24, 64 // 12))
    np.testing.assert_array_equal(fig[band:band + 64, :80], code)  # the picture itself, unchanged
    assert fig.shape[0] > 64 + band + 50                             # a legend below
    assert fig.shape[1] >= 360                                       # room for the text
    with pytest.raises(ValueError):
        flow_figure(f, mask, "4d", 1.0)


def test_legend_strip_has_the_requested_width_for_wide_and_narrow_figures():
    for w in (1200, 300, 150):
        assert legend_strip(w, 2.5, 0.1).shape[1] == w


def test_caption_hstack_and_text_panel_shapes():
    img = np.zeros((50, 70, 3), np.uint8)
    cap = caption(img, "a rather long title that must shrink to fit", band=16)
    assert cap.shape == (66, 70, 3) and cap[:16].max() > 200 and (cap[16:] == 0).all()  # text drawn in the band
    row = hstack([img, np.zeros((30, 20, 3), np.uint8)], gap=2)
    assert row.shape == (50, 92, 3) and (row[40:, 72:] == 255).all()   # shorter panel padded
    t = text_panel(["one two three four five six seven eight nine ten"], 80, line_height=14)
    assert t.shape[0] > 14 * 2                                          # wrapped onto several lines


def _square(x0, y0, size, z=0.0, n=8):
    """A flat square of n x n cells facing the camera (image-space, z depth)."""
    c = np.linspace(0, size, n + 1)
    gx, gy = np.meshgrid(c + x0, c + y0)
    verts = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)], -1).astype(np.float32)
    tris = []
    for i in range(n):
        for j in range(n):
            a = i * (n + 1) + j
            tris += [[a, a + 1, a + n + 2], [a, a + n + 2, a + n + 1]]
    return verts, np.asarray(tris, np.int64)


def _front(verts, tris):
    """Flip the winding when these triangles are culled as back faces."""
    lines = surface_grid(verts, tris, (100, 100), spacing=10.0)
    return tris if lines.any() else tris[:, ::-1].copy()


def test_surface_grid_draws_lines_at_multiples_of_the_spacing_on_the_visible_surface_only():
    verts, tris = _square(20.0, 20.0, 60.0)
    tris = _front(verts, tris)
    lines = surface_grid(verts, tris, (100, 100), spacing=10.0)
    # vertical lines where x crosses 30, 40, ... 70 (x in 20..80): 5 interior columns, at x = 30..70
    cols = np.flatnonzero(lines[55, :])  # (row 50 is a horizontal line)
    assert set(cols) == {30, 40, 50, 60, 70}
    assert not lines[:18].any() and not lines[:, :18].any()            # nothing off the mesh
    # back faces culled: the flipped square draws nothing
    assert not surface_grid(verts, tris[:, ::-1].copy(), (100, 100), spacing=10.0).any()
    # occlusion: a nearer square over the left half hides the far square's lines there
    near, ntris = _square(0.0, 0.0, 50.0, z=-10.0)
    ntris = _front(near, ntris)
    both_v = np.concatenate([verts, near])
    both_t = np.concatenate([tris, ntris + len(verts)])
    coords = np.concatenate([verts[:, :2], near[:, :2] + 1005.0])     # the near square: lines at 5, 15, ..
    occl = surface_grid(both_v, both_t, (100, 100), coords=coords, spacing=10.0)
    assert not occl[30, 30] and not occl[30, 40]                       # hidden far-square lines
    assert occl[70, 60]                                                # visible far-square line


def test_draw_surface_grid_moves_with_the_surface():
    verts, tris = _square(20.0, 20.0, 60.0)
    tris = _front(verts, tris)
    img = np.zeros((100, 100, 3), np.uint8)
    moved = verts + np.array([3.0, 0.0, 0.0], np.float32)
    a = draw_surface_grid(img, verts, tris, spacing=10.0)
    b = draw_surface_grid(img, moved, tris, coords=verts, spacing=10.0)  # the grid of the first position
    ca = np.flatnonzero(a[55, :, 1] > 0)
    cb = np.flatnonzero(b[55, :, 1] > 0)
    np.testing.assert_array_equal(cb, ca + 3)
