"""FlowNetC's correlation layer in pure PyTorch (used by DFFNet, DeepFaceFlow Sec. 4.2).

FlowNetC (Dosovitskiy et al., ICCV 2015, eq. (1)) compares two feature maps f1, f2 by

    c(x1, x2) = sum_{o in [-k, k]^2} < f1(x1 + o), f2(x2 + o) >

for every x1 (stride1 = 1) and every displacement d = x2 - x1 with components in
``range(-max_displacement, max_displacement + 1, stride2)``, normalised by the number of
summed elements ``kernel_size**2 * C``. The D x D displacements (``D = 2 * (max_displacement
// stride2) + 1``) are stacked as channels, row-major in (dy, dx): channel ``dy_i * D + dx_i``.
f2 is zero outside the image.

Everything is differentiable and device-agnostic (no custom CUDA kernel). Two equivalent
strategies are provided, both memory-bounded (never a (B, C, D*D, H, W) tensor):

- ``"shift"``: one elementwise multiply-and-sum over C per displacement (D*D small kernels);
- ``"matmul"``: per displacement row, one batched matrix product of f1's rows against the
  shifted, padded f2 rows (all horizontal offsets at once), from which the D needed diagonals
  are read with a strided view; a custom autograd Function with the matching bmm backward.
  More flops, but BLAS; much faster on CPU for FlowNetC-sized maps.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from faceflow.errors import FaceflowError

__all__ = ["correlation", "correlation_channels", "benchmark_correlation"]


def correlation_channels(max_displacement: int = 20, stride2: int = 2) -> int:
    """Number of output channels D*D, D = 2 * (max_displacement // stride2) + 1 (441 for 20, 2)."""
    D = 2 * (max_displacement // stride2) + 1
    return D * D


def _check(f1: torch.Tensor, f2: torch.Tensor, max_displacement: int, stride2: int, kernel_size: int) -> None:
    if not (isinstance(f1, torch.Tensor) and isinstance(f2, torch.Tensor)):
        raise FaceflowError("correlation: f1 and f2 must be torch tensors")
    if f1.dim() != 4 or f1.shape != f2.shape:
        raise FaceflowError(f"correlation: f1 and f2 must both be (B, C, H, W) of the same shape, "
                            f"got {tuple(f1.shape)} and {tuple(f2.shape)}")
    if f1.numel() == 0:
        raise FaceflowError(f"correlation: empty input {tuple(f1.shape)}")
    if not f1.is_floating_point() or f1.dtype != f2.dtype:
        raise FaceflowError(f"correlation: f1 and f2 must share a floating dtype, got {f1.dtype} and {f2.dtype}")
    if f1.device != f2.device:
        raise FaceflowError(f"correlation: f1 on {f1.device} but f2 on {f2.device}")
    if max_displacement < 0 or stride2 < 1:
        raise FaceflowError(f"correlation: need max_displacement >= 0 and stride2 >= 1, "
                            f"got {max_displacement}, {stride2}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise FaceflowError(f"correlation: kernel_size must be odd and >= 1, got {kernel_size}")


def _corr_shift(f1: torch.Tensor, f2p: torch.Tensor, r: int, s: int) -> torch.Tensor:
    """(B, C, H, W), f2 padded by r*s -> (B, D*D, H, W) unnormalised, one product per shift."""
    B, C, H, W = f1.shape
    D = 2 * r + 1
    outs = []  # stacked, not written in place: CopySlices would clone the output per shift in backward
    for i in range(D):
        rows = f2p[:, :, i * s:i * s + H]
        for j in range(D):
            outs.append((f1 * rows[..., j * s:j * s + W]).sum(1))
    return torch.stack(outs, 1)


def _diagonals(m: torch.Tensor, D: int, s: int) -> torch.Tensor:
    """View (N, W, D) of a contiguous (N, W, Wp) matrix: element (x, x + j*s), j = 0..D-1."""
    st = m.stride()
    return m.as_strided((m.shape[0], m.shape[1], D), (st[0], st[1] + st[2], s * st[2]))


class _CorrMatmul(torch.autograd.Function):
    """Correlation as one bmm per displacement row, with an explicit, memory-light backward.

    Per row dy, ``m = a @ b`` with a (B*H, W, C) the rows of f1 and b (B*H, C, Wp) the rows of
    padded f2 shifted by dy gives <f1(x), f2(x')> for every x, x' on the row; the D wanted
    displacements are D diagonals of m. The backward scatters the output gradient back onto
    those diagonals and uses two more bmm per row. Only f1 and the padded f2 are saved (autograd
    through slices and views would materialise D copies of f2 or a full-size zero gradient per
    row).
    """

    @staticmethod
    def forward(ctx, f1: torch.Tensor, f2p: torch.Tensor, r: int, s: int) -> torch.Tensor:
        B, C, H, W = f1.shape
        D, Wp = 2 * r + 1, f2p.shape[-1]
        a = f1.permute(0, 2, 3, 1).reshape(B * H, W, C)
        bf = f2p.permute(0, 2, 1, 3)  # (B, Hp, C, Wp)
        out = f1.new_empty(B * H, W, D, D)
        for i in range(D):
            b = bf[:, i * s:i * s + H].reshape(B * H, C, Wp)
            out[:, :, i] = _diagonals(torch.bmm(a, b), D, s)
        ctx.save_for_backward(f1, f2p)
        ctx.rs = (r, s)
        return out.view(B, H, W, D * D).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        f1, f2p = ctx.saved_tensors
        r, s = ctx.rs
        B, C, H, W = f1.shape
        D, Hp, Wp = 2 * r + 1, f2p.shape[-2], f2p.shape[-1]
        gg = g.permute(0, 2, 3, 1).reshape(B * H, W, D, D)
        a = f1.permute(0, 2, 3, 1).reshape(B * H, W, C)
        bf = f2p.permute(0, 2, 1, 3)
        ga = torch.zeros_like(a) if ctx.needs_input_grad[0] else None
        gb = f2p.new_zeros(B, Hp, C, Wp) if ctx.needs_input_grad[1] else None
        m = g.new_zeros(B * H, W, Wp)
        for i in range(D):
            _diagonals(m, D, s).copy_(gg[:, :, i])  # the only non-zeros of m: its D diagonals
            b = bf[:, i * s:i * s + H].reshape(B * H, C, Wp)
            if ga is not None:
                ga.baddbmm_(m, b.transpose(1, 2))
            if gb is not None:
                gb[:, i * s:i * s + H] += torch.bmm(a.transpose(1, 2), m).view(B, H, C, Wp)
        g1 = ga.view(B, H, W, C).permute(0, 3, 1, 2) if ga is not None else None
        g2 = gb.permute(0, 2, 1, 3) if gb is not None else None
        return g1, g2, None, None


def _corr_matmul(f1: torch.Tensor, f2p: torch.Tensor, r: int, s: int) -> torch.Tensor:
    """(B, C, H, W), f2 padded by r*s -> (B, D*D, H, W) unnormalised, one bmm per displacement row."""
    return _CorrMatmul.apply(f1, f2p, r, s)


def correlation(f1: torch.Tensor, f2: torch.Tensor, max_displacement: int = 20, stride2: int = 2,
                kernel_size: int = 1, normalize: bool = True, method: str = "auto") -> torch.Tensor:
    """FlowNetC correlation of two feature maps.

    f1, f2 (B, C, H, W) -> (B, D*D, H, W), D = 2 * (max_displacement // stride2) + 1.
    Channel ``k = dy_i * D + dx_i`` holds ``sum_c f1[b, c, y, x] * f2[b, c, y + dy, x + dx]``
    (f2 zero outside) for dy, dx in ``range(-r*stride2, r*stride2 + 1, stride2)``,
    r = max_displacement // stride2; with ``kernel_size`` k > 1 (odd) the products are also summed
    over the k x k patch around (x, y). Divided by ``kernel_size**2 * C`` when ``normalize``.
    ``method``: "shift", "matmul" or "auto" (matmul; identical results up to rounding).
    """
    _check(f1, f2, max_displacement, stride2, kernel_size)
    if method not in ("auto", "shift", "matmul"):
        raise FaceflowError(f"correlation: unknown method {method!r} (auto, shift, matmul)")
    B, C, H, W = f1.shape
    r, s = max_displacement // stride2, stride2
    pad = r * s
    f2p = F.pad(f2, (pad, pad, pad, pad))
    out = (_corr_shift if method == "shift" else _corr_matmul)(f1, f2p, r, s)
    if kernel_size > 1:  # patch sum == box filter of the pointwise correlation (f1 zero outside)
        out = F.avg_pool2d(out, kernel_size, stride=1, padding=kernel_size // 2,
                           count_include_pad=True) * kernel_size ** 2
    if normalize:
        out = out / (kernel_size ** 2 * C)
    return out


def benchmark_correlation(B: int = 1, C: int = 256, H: int = 28, W: int = 28, repeats: int = 3,
                          max_displacement: int = 20, stride2: int = 2, device: str = "cpu",
                          backward: bool = False) -> dict[str, float]:
    """Best-of-``repeats`` seconds per call of each method on random (B, C, H, W) inputs (forward, or
    forward + backward when ``backward``). Returns {"shift": s, "matmul": s}."""
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(B, C, H, W, generator=g).to(device).requires_grad_(backward)
    f2 = torch.randn(B, C, H, W, generator=g).to(device).requires_grad_(backward)
    res = {}
    for method in ("shift", "matmul"):
        times = []
        for _ in range(repeats + 1):
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.set_grad_enabled(backward):
                out = correlation(f1, f2, max_displacement, stride2, method=method)
                if backward:
                    out.sum().backward()
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        res[method] = min(times[1:])  # min: robust to other load on the machine
    return res
