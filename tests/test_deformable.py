"""Deformable convs of LSNet's head against torchvision's deform_conv2d and direct indexing."""

import math
import shutil

import pytest
import torch
from torchvision.ops import deform_conv2d

from iou_aware.layers import deformable
from iou_aware.layers.deformable import (
    ModulatedDeformConv,
    PyramidDeformConv,
    deform_conv3x3,
    fused_kernel_available,
    kernel_grid,
    location_grid,
    pyramid_levels,
)
from iou_aware.layers.scratch_pool import ScratchPool

# Every implementation this machine can run; the C++ kernel is built by setup.py wherever a
# compiler is (test_the_fused_kernel_is_built_where_a_compiler_is).
FAST_IMPLS = ["grid_sample"] + (["fused"] if fused_kernel_available() else [])


def _random_positions(n, h, w, generator, margin=1.5):
    """Positions spread over the map and a bit beyond (samples outside read zeros)."""
    scale = torch.tensor([h, w], dtype=torch.float64)[None, None, :, None, None]
    return torch.rand(n, 9, 2, h, w, generator=generator, dtype=torch.float64) * (scale + 2 * margin) - margin


@pytest.mark.parametrize("impl", FAST_IMPLS + ["torchvision", "auto"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_deform_conv3x3_equals_deform_conv2d_on_its_own_grid(impl, with_mask):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 9, 7, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    offsets = torch.randn(2, 18, 9, 7, generator=g, dtype=torch.float64) * 2
    mask = torch.rand(2, 9, 9, 7, generator=g, dtype=torch.float64) if with_mask else None
    expected = deform_conv2d(x, offsets, weight, bias, padding=1, mask=mask)
    # deform_conv2d's tap k of location (i, j) sits at (i + dy_k, j + dx_k) + offset_k.
    taps = location_grid(9, 7, dtype=torch.float64)[None] + kernel_grid(dtype=torch.float64)[:, :, None, None]
    positions = taps[None] + offsets.reshape(2, 9, 2, 9, 7)
    actual = deform_conv3x3(x, positions, weight, bias, mask, impl=impl)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_without_offsets_it_is_a_plain_conv(impl, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 6, 6, generator=g, dtype=dtype)
    weight = torch.randn(2, 3, 3, 3, generator=g, dtype=dtype)
    taps = location_grid(6, 6, dtype=dtype)[None] + kernel_grid(dtype=dtype)[:, :, None, None]
    actual = deform_conv3x3(x, taps[None], weight, impl=impl)
    torch.testing.assert_close(actual, torch.nn.functional.conv2d(x, weight, padding=1))


@pytest.mark.parametrize("impl", FAST_IMPLS)
def test_pyramid_samples_the_same_pixels_on_every_level(impl):
    """Levels built by subsampling one map: B = A[::2, ::2], C = A[::4, ::4]. Integer positions on
    B that are even read the same pixels of A on all three levels, so the three outputs equal
    sum_k w_k * A[2 * q_k] computed by indexing."""
    g = torch.Generator().manual_seed(2)
    a = torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64)
    levels = [a, a[..., ::2, ::2], a[..., ::4, ::4]]
    strides = [8, 16, 32]
    conv = PyramidDeformConv(3, 2, impl).double()
    q = 2 * torch.randint(0, 8, (1, 9, 2, 16, 16), generator=g).double()  # even, inside B (16 x 16)
    out = conv(levels, strides, 1, q)
    assert out.shape == (1, 6, 16, 16)
    # Reference: gather A at 2q, then apply the weights.
    rows, cols = (2 * q[0, :, 0]).long(), (2 * q[0, :, 1]).long()  # (9, 16, 16)
    sampled = a[0][:, rows, cols]  # (3, 9, 16, 16)
    expected = torch.einsum("ock,ckhw->ohw", conv.weight.reshape(2, 3, 9), sampled)
    for chunk in out[0].split(2):
        torch.testing.assert_close(chunk, expected)


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("sizes", [[(16, 16), (8, 8), (4, 4), (2, 2)], [(25, 19), (13, 10), (7, 5)]])
def test_pyramid_implementations_agree_on_every_level(impl, sizes):
    """Each implementation against deform_conv2d (read with a conv stride for finer levels and zero
    padding for coarser ones), odd sizes included, values and gradients (features, weight,
    positions) in float64."""
    g = torch.Generator().manual_seed(3)
    features = [torch.randn(2, 4, h, w, generator=g, dtype=torch.float64, requires_grad=True) for h, w in sizes]
    strides = [8 * 2**i for i in range(len(sizes))]
    fast = PyramidDeformConv(4, 3, impl).double()
    reference = PyramidDeformConv(4, 3, impl="torchvision").double()
    reference.load_state_dict(fast.state_dict())
    for level, (h, w) in enumerate(sizes):
        # Away from integer positions (on every level), where bilinear sampling is not differentiable.
        positions = (_random_positions(2, h, w, g) + 0.003).requires_grad_()
        results = []
        for conv in (fast, reference):
            out = conv(features, strides, level, positions)
            inputs = [positions, conv.weight] + [features[i] for i in pyramid_levels(level, len(sizes))]
            results.append([out] + list(torch.autograd.grad((out * out).sum(), inputs)))
        for actual, expected in zip(*results):
            torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("impl", FAST_IMPLS)
def test_modulated_deform_conv_implementations_agree_and_start_as_a_plain_conv(impl):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 8, 6, generator=g, dtype=torch.float64)
    fast = ModulatedDeformConv(4, 3, impl).double()
    # At initialization: zero offsets, modulation sigmoid(0) = 0.5.
    expected = 0.5 * torch.nn.functional.conv2d(x, fast.weight, padding=1) + fast.bias[:, None, None]
    torch.testing.assert_close(fast(x), expected)
    torch.nn.init.normal_(fast.offset_conv.weight, std=0.3)
    reference = ModulatedDeformConv(4, 3, impl="torchvision").double()
    reference.load_state_dict(fast.state_dict())
    torch.testing.assert_close(fast(x), reference(x))


@pytest.mark.parametrize("impl", FAST_IMPLS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_gradients_match_torchvision(impl, with_mask):
    """Values and gradients (input, weight, bias, positions, modulation) in float64, on a batch of 2
    (the weight is shared by the images: its gradient sums over them) and odd sizes."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    # Away from integer positions, where bilinear sampling is not differentiable.
    positions = (_random_positions(2, 7, 5, g) + 0.01).requires_grad_()
    mask = torch.rand(2, 9, 7, 5, generator=g, dtype=torch.float64, requires_grad=True) if with_mask else None
    inputs = (x, weight, bias, positions) + ((mask,) if with_mask else ())
    results = []
    for name in (impl, "torchvision"):
        out = deform_conv3x3(x, positions, weight, bias, mask, impl=name)
        results.append((out,) + torch.autograd.grad((out * out).sum(), inputs))
    for fast, reference in zip(*results):
        torch.testing.assert_close(fast, reference)


def test_pyramid_levels_and_errors():
    assert pyramid_levels(0, 5) == [0, 1, 2]
    assert pyramid_levels(2, 5) == [2, 1, 3]
    assert pyramid_levels(4, 5) == [4, 3, 2]
    with pytest.raises(ValueError, match="at least 3"):
        pyramid_levels(0, 2)
    with pytest.raises(ValueError, match="implementation"):
        deform_conv3x3(torch.zeros(1, 1, 3, 3), torch.zeros(1, 9, 2, 3, 3), torch.zeros(1, 1, 3, 3), impl="cuda")


def test_pyramid_deform_conv_is_initialised_as_the_reference():
    """mmcv's kaiming_init: normal with std sqrt(2 / fan_out), fan_out = out_channels x 9."""
    torch.manual_seed(0)
    conv = PyramidDeformConv(128, 256)
    expected = math.sqrt(2 / (256 * 9))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.01)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=expected / 50)


def test_the_fused_kernel_is_built_where_a_compiler_is():
    """setup.py builds iou_aware._C as an optional extension: a failed build must not pass unseen
    where a C++ compiler exists (CI's machines have one)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the package runs with the grid_sample implementation")
    assert fused_kernel_available(), "iou_aware._C was not built: rerun `make install` and read its log"


@pytest.mark.skipif(not fused_kernel_available(), reason="iou_aware._C not built")
def test_auto_picks_fused_on_cpu_and_grid_sample_elsewhere(monkeypatch):
    calls = []
    monkeypatch.setattr(deformable, "_deform_conv_fused", lambda *args: calls.append("fused"))
    monkeypatch.setattr(deformable, "_deform_conv_grid_sample", lambda *args: calls.append("grid_sample"))
    positions = torch.zeros(1, 9, 2, 3, 3)
    deform_conv3x3(torch.zeros(1, 1, 3, 3), positions, torch.zeros(1, 1, 3, 3))
    deform_conv3x3(torch.zeros(1, 1, 3, 3, dtype=torch.bfloat16), positions, torch.zeros(1, 1, 3, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        deform_conv3x3(torch.zeros(1, 1, 3, 3), positions, torch.zeros(1, 1, 3, 3))
    assert calls == ["fused", "grid_sample", "grid_sample"]


def test_auto_under_cpu_autocast_trains_close_to_float32():
    """Under bf16 autocast "auto" falls back to grid_sample (bf16 batched matmul): forward and
    backward run, within bf16 precision of the float32 result."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 8, 6, 5, generator=g, requires_grad=True)
    weight = torch.randn(4, 8, 3, 3, generator=g, requires_grad=True)
    positions = (_random_positions(2, 6, 5, g).float() + 0.01).requires_grad_()
    mask = torch.rand(2, 9, 6, 5, generator=g, requires_grad=True)
    results = []
    for enabled in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            out = deform_conv3x3(x, positions, weight, None, mask)
        results.append([out.float()] + list(torch.autograd.grad(out.float().square().sum(), (x, weight, mask))))
    for reference, low_precision in zip(*results):
        assert torch.allclose(low_precision, reference, rtol=0.05, atol=0.05 * reference.abs().max().item())


@pytest.mark.skipif(not fused_kernel_available(), reason="iou_aware._C not built")
def test_fused_gradients_at_the_border_and_outside_match_torchvision():
    """Positions on the map's edges, just inside (-1, h), outside it and NaN-free far away: the
    kernel reads zeros there with zero gradient, as deform_conv2d."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ys = torch.tensor([-3.0, -0.999, -0.5, 0.25, 2.5, 3.75, 4.5, 4.999, 60.0], dtype=torch.float64)
    xs = torch.tensor([-0.4, 3.6, -2.0, 1.3, 2.7, -0.99, 3.99, 0.5, 1e6], dtype=torch.float64)
    positions = torch.stack([ys, xs], dim=1)[None, :, :, None, None].expand(1, 9, 2, 5, 4).clone().requires_grad_()
    results = []
    for impl in ("fused", "torchvision"):
        out = deform_conv3x3(x, positions, weight, impl=impl)
        results.append([out] + list(torch.autograd.grad((out * out).sum(), (x, weight, positions))))
    for actual, expected in zip(*results):
        torch.testing.assert_close(actual, expected)


@pytest.mark.skipif(not fused_kernel_available(), reason="iou_aware._C not built")
def test_fused_refuses_what_it_cannot_run():
    positions = torch.zeros(1, 9, 2, 3, 3, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="DEFORM_CONV_IMPL auto or grid_sample"):
        deform_conv3x3(torch.zeros(1, 1, 3, 3, dtype=torch.bfloat16), positions, torch.zeros(1, 1, 3, 3), impl="fused")
    with pytest.raises(RuntimeError, match="positions must be"):
        deformable._cpu_kernels.deform_gather_forward(torch.zeros(1, 3, 3, 1), torch.zeros(1, 8, 2, 3, 3), None)


@pytest.mark.skipif(not fused_kernel_available(), reason="iou_aware._C not built")
def test_fused_convs_in_flight_together_keep_their_own_taps():
    """Pooled taps: two convs whose forwards both run before either backward (as in a training
    step), then a no-grad forward in between, must give the same values and gradients as
    deform_conv2d; a second backward through the same graph is refused, not silently wrong."""
    g = torch.Generator().manual_seed(7)
    xs = [torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    positions = [(_random_positions(2, 6, 5, g) + 0.01).requires_grad_() for _ in range(2)]
    pool = ScratchPool(max_free_bytes=1 << 30)  # one model's pool, shared by its convs
    results = {}
    for impl in ("fused", "torchvision"):
        outs = [deform_conv3x3(x, p, weight, impl=impl, scratch_pool=pool) for x, p in zip(xs, positions)]
        with torch.no_grad():
            deform_conv3x3(
                xs[0] * 2, positions[1], weight, impl=impl, scratch_pool=pool
            )  # takes and gives back a buffer
        grads = [torch.autograd.grad((out * out).sum(), [x, p, weight]) for out, x, p in zip(outs, xs, positions)]
        results[impl] = [o.detach() for o in outs] + [t for group in grads for t in group]
    for actual, expected in zip(results["fused"], results["torchvision"]):
        torch.testing.assert_close(actual, expected)
    assert pool.free_bytes > 0  # the buffers came back to the pool
    out = deform_conv3x3(xs[0], positions[0], weight, impl="fused", scratch_pool=pool)
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="after one backward"):
        out.sum().backward()


def test_without_the_kernel_auto_computes_with_grid_sample(monkeypatch):
    monkeypatch.setattr(deformable, "_cpu_kernels", None)  # as on a machine that could not build it
    assert not fused_kernel_available()
    g = torch.Generator().manual_seed(9)
    x = torch.randn(1, 3, 5, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64)
    positions = _random_positions(1, 5, 6, g)
    expected = deform_conv3x3(x, positions, weight, impl="torchvision")
    torch.testing.assert_close(deform_conv3x3(x, positions, weight), expected)
    with pytest.raises(RuntimeError, match=r"iou_aware._C \(built: False\)"):
        deform_conv3x3(x, positions, weight, impl="fused")


def test_a_stale_kernel_build_is_ignored_with_a_warning():
    class Stale:  # a build from before INTERFACE_VERSION changed
        INTERFACE_VERSION = deformable.KERNEL_INTERFACE_VERSION - 1

    with pytest.warns(UserWarning, match="stale build"):
        assert deformable._usable_kernels(Stale) is None
    assert deformable._usable_kernels(None) is None
    if fused_kernel_available():  # the installed build is current
        assert deformable._cpu_kernels.INTERFACE_VERSION == deformable.KERNEL_INTERFACE_VERSION


def test_the_taps_pool_is_capped_by_the_environment_and_named_when_wrong(monkeypatch):
    monkeypatch.setenv(deformable.SCRATCH_POOL_ENV, "3")
    assert deformable.new_scratch_pool().max_free_bytes == 3 * 1024**2
    monkeypatch.delenv(deformable.SCRATCH_POOL_ENV)
    assert deformable.new_scratch_pool().max_free_bytes == deformable.DEFAULT_SCRATCH_POOL_MB * 1024**2
    monkeypatch.setenv(deformable.SCRATCH_POOL_ENV, "lots")
    with pytest.raises(ValueError, match="IOU_AWARE_SCRATCH_POOL_MB = 'lots'"):
        deformable.new_scratch_pool()


def test_a_model_owns_its_taps_pool_capped_by_its_key_and_freed_with_it():
    import copy
    import gc
    import weakref

    from detectron2.modeling import build_model

    from iou_aware.model_zoo import get_config

    cfg = get_config("Shapes/lsnet_slim_R_FPN.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.LSNET.NUM_CONVS", "1", "MODEL.LSNET.DEFORM_CONV_POOL_MB", "64"])
    model = build_model(cfg)
    pool = model.head.scratch_pool
    assert pool.max_free_bytes == 64 * 1024**2
    convs = [
        m for m in model.modules() if isinstance(m, (deformable.ModulatedDeformConv, deformable.PyramidDeformConv))
    ]
    assert convs and all(m.scratch_pool is pool for m in convs)
    if fused_kernel_available():
        features = model.backbone(torch.randn(1, 3, 64, 64))
        outputs = model.head([features[f] for f in model.head_in_features])
        sum(x.sum() for level in outputs for x in level).backward()
        assert pool.free_bytes > 0  # the taps came back to the model's pool
        del features, outputs
    clone = copy.deepcopy(model)  # a copy gets an empty pool of its own, with the same cap
    assert clone.head.scratch_pool is not pool and clone.head.scratch_pool.max_free_bytes == pool.max_free_bytes
    released = weakref.ref(pool)
    del model, convs, pool, clone
    gc.collect()
    assert released() is None

    cfg.merge_from_list(["MODEL.LSNET.DEFORM_CONV_POOL_MB", "0"])
    assert build_model(cfg).head.scratch_pool.max_free_bytes == 0
