"""bnorm.torch.BatchNorm*d against torch.nn.BatchNorm*d: outputs, gradients of the input and the
parameters, running statistics, state_dict, modes, options, layouts, dtypes, threads."""

import copy
import io

import pytest

from torch_helpers import bt, max_abs, tolerance, torch

nn = torch.nn

CASES = [  # (class name, input shape)
    ("BatchNorm1d", (64, 100)), ("BatchNorm1d", (2, 3)), ("BatchNorm1d", (5, 7, 9)),
    ("BatchNorm2d", (4, 3, 5, 6)), ("BatchNorm2d", (2, 17, 3, 3)), ("BatchNorm2d", (3, 1, 9, 9)),
    ("BatchNorm2d", (4, 9, 1, 1)), ("BatchNorm3d", (2, 3, 4, 3, 5)),
]
OPTIONS = [
    {}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
    {"eps": 1e-3, "momentum": 0.7},
]


def pair(name, channels, dtype, **options):
    ours = getattr(bt, name)(channels, dtype=dtype, **options)
    theirs = getattr(nn, name)(channels, dtype=dtype, **options)
    if ours.affine:
        with torch.no_grad():
            w = torch.rand(channels, dtype=dtype) + 0.5
            b = torch.randn(channels, dtype=dtype)
            ours.weight.copy_(w), theirs.weight.copy_(w)
            ours.bias.copy_(b), theirs.bias.copy_(b)
    return ours, theirs


def memory_formats(shape):
    yield torch.contiguous_format
    if len(shape) == 4:
        yield torch.channels_last
    if len(shape) == 5:
        yield torch.channels_last_3d


def compare_step(ours, theirs, x, tol):
    xa = x.detach().clone().requires_grad_()
    xb = x.detach().clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    assert max_abs(ya, yb) <= tol * 10, "output"
    dy = torch.randn_like(ya)
    ya.backward(dy), yb.backward(dy)
    assert max_abs(xa.grad, xb.grad) <= tol * 100, "input gradient"
    if ours.affine:
        assert max_abs(ours.weight.grad, theirs.weight.grad) <= tol * 100 * x.numel() ** 0.5
        assert max_abs(ours.bias.grad, theirs.bias.grad) <= tol * 100 * x.numel() ** 0.5
        ours.weight.grad = theirs.weight.grad = ours.bias.grad = theirs.bias.grad = None
    for buffer in ("running_mean", "running_var"):
        a, b = getattr(ours, buffer), getattr(theirs, buffer)
        assert (a is None) == (b is None)
        if a is not None:
            assert max_abs(a, b) <= tol * 10, buffer
    if ours.num_batches_tracked is not None:
        assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item()
    return ya


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,shape", CASES, ids=lambda c: str(c))
def test_matches_torch(name, shape, dtype, options):
    torch.manual_seed(0)
    ours, theirs = pair(name, shape[1], dtype, **options)
    for fmt in memory_formats(shape):
        for step in range(2):
            x = (torch.randn(shape, dtype=dtype) * 2 + 3).contiguous(memory_format=fmt)
            y = compare_step(ours, theirs, x, tolerance(dtype))
            if fmt != torch.contiguous_format:  # no copy: the output keeps the layout
                assert y.is_contiguous(memory_format=fmt)
        ours.eval(), theirs.eval()
        x = torch.randn(shape, dtype=dtype).contiguous(memory_format=fmt)
        compare_step(ours, theirs, x, tolerance(dtype))
        ours.train(), theirs.train()


def test_uses_the_operator_not_torch():
    # A wrong formula would show in test_matches_torch; this proves bnorm computed it: torch's
    # profiler sees the bnorm operator and no aten::batch_norm.
    if not bt.HAVE_OPERATOR:
        pytest.skip(f"operator not built: {bt.OPERATOR_ERROR}")
    m = bt.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    with torch.autograd.profiler.profile() as prof:
        m(x).sum().backward()
    names = {e.name for e in prof.function_events}
    assert "bnorm::batch_norm" in names
    assert not any(n.startswith("aten::batch_norm") or n == "aten::native_batch_norm"
                   for n in names)


def test_non_contiguous_input_is_copied_once_and_correct():
    torch.manual_seed(1)
    ours, theirs = pair("BatchNorm2d", 4, torch.float64)
    x = torch.randn(3, 4, 10, 4, dtype=torch.float64)[:, :, ::2]
    assert not x.is_contiguous()
    compare_step(ours, theirs, x, tolerance(torch.float64))


def test_state_dict_round_trip_and_keys():
    torch.manual_seed(2)
    ours, theirs = pair("BatchNorm2d", 5, torch.float32)
    for _ in range(3):
        ours(torch.randn(4, 5, 3, 3))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    theirs.load_state_dict(torch.load(buffer))
    fresh = bt.BatchNorm2d(5)
    fresh.load_state_dict(theirs.state_dict())
    ours.eval(), theirs.eval(), fresh.eval()
    x = torch.randn(2, 5, 3, 3)
    assert max_abs(fresh(x), theirs(x)) <= 1e-6
    assert max_abs(ours(x), fresh(x)) == 0
    assert repr(ours) == repr(theirs)
    assert ours.extra_repr() == theirs.extra_repr()


def test_reset_running_stats_and_isinstance():
    m = bt.BatchNorm1d(3)
    m(torch.randn(8, 3))
    m.reset_running_stats()
    assert m.num_batches_tracked.item() == 0 and torch.all(m.running_var == 1)
    assert isinstance(m, nn.BatchNorm1d) and isinstance(m, nn.modules.batchnorm._BatchNorm)


def test_no_grad_and_inference_mode():
    torch.manual_seed(3)
    ours, theirs = pair("BatchNorm2d", 3, torch.float32)
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        ya, yb = ours(x), theirs(x)
    assert not ya.requires_grad and max_abs(ya, yb) <= 1e-5
    assert max_abs(ours.running_mean, theirs.running_mean) <= 1e-6  # training still updates
    with torch.inference_mode():
        ya, yb = ours(x), theirs(x)
    assert max_abs(ya, yb) <= 1e-5


def test_single_value_per_channel_error_and_empty_batch():
    m = bt.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        m(torch.randn(1, 3))
    m.eval()
    assert m(torch.randn(1, 3)).shape == (1, 3)  # fine in eval
    m.train()
    before = m.running_mean.clone()
    y = m(torch.randn(0, 3, 4))
    assert y.shape == (0, 3, 4) and torch.equal(m.running_mean, before)


def test_other_dtypes_run_torch():
    ours, theirs = pair("BatchNorm2d", 3, torch.bfloat16)
    x = torch.randn(2, 3, 4, 4, dtype=torch.bfloat16)
    assert max_abs(ours(x).float(), theirs(x).float()) == 0


def test_follows_torch_threads():
    if not bt.HAVE_OPERATOR:
        pytest.skip(f"operator not built: {bt.OPERATOR_ERROR}")
    from bnorm import _torch_ops

    before = torch.get_num_threads()
    m = bt.BatchNorm1d(4)
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            m(torch.randn(8, 4))
            assert _torch_ops.openmp_threads() == n
    finally:
        torch.set_num_threads(before)


def test_deepcopy_and_pickle_after_revert():
    import pickle

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    bt.convert(model)
    assert type(model[1]) is bt.BatchNorm2d
    clone = copy.deepcopy(model)
    assert type(clone[1]) is bt.BatchNorm2d
    bt.revert(clone)
    assert type(clone[1]) is nn.BatchNorm2d
    data = pickle.dumps(clone)
    assert b"bnorm" not in data
