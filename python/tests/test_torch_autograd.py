"""Autograd of bnorm.torch: gradcheck and gradgradcheck in float64 (finite differences are the
independent reference), forward-mode AD, and graph capture (jit.trace, jit.script, fx, ONNX)."""

import pytest

from torch_helpers import bt, max_abs, torch

nn = torch.nn
F = torch.nn.functional


def make_input(shape, fmt=torch.contiguous_format):
    torch.manual_seed(0)
    return (torch.randn(shape, dtype=torch.float64) * 2 + 1).contiguous(
        memory_format=fmt).requires_grad_()


def functional(training, affine=True, channels=3):
    weight = (torch.rand(channels, dtype=torch.float64) + 0.5).requires_grad_() if affine else None
    bias = torch.randn(channels, dtype=torch.float64).requires_grad_() if affine else None
    running_mean = torch.randn(channels, dtype=torch.float64)
    running_var = torch.rand(channels, dtype=torch.float64) + 0.5

    def f(x, *params):
        w, b = params if params else (None, None)
        return bt.batch_norm(x, running_mean.clone(), running_var.clone(), w, b, training, 0.1,
                             1e-5)

    return f, ([weight, bias] if affine else [])


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape,fmt", [((4, 3), torch.contiguous_format),
                                       ((3, 3, 4), torch.contiguous_format),
                                       ((2, 3, 3, 2), torch.channels_last)],
                         ids=["NC", "NCL", "NHWC"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_gradcheck_and_gradgradcheck(shape, fmt, training, affine):
    f, params = functional(training, affine)
    x = make_input(shape, fmt)
    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


def test_double_backward_equals_torch():
    # create_graph=True: the gradient's own gradient equals torch's (a gradient penalty).
    torch.manual_seed(1)
    ours, theirs = bt.BatchNorm2d(3).double(), nn.BatchNorm2d(3).double()
    x = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    results = []
    for m in (ours, theirs):
        xi = x.clone().requires_grad_()
        y = m(xi)
        (g,) = torch.autograd.grad((y ** 3).sum(), xi, create_graph=True)
        penalty = (g ** 2).sum()
        results.append(torch.autograd.grad(penalty, (xi, m.weight)))
    for a, b in zip(*results):
        assert max_abs(a, b) <= 1e-9


@pytest.mark.parametrize("training", [True, False])
def test_forward_mode_ad_falls_back_to_torch(training):
    import torch.autograd.forward_ad as fwAD

    f, params = functional(training)
    x = make_input((4, 3, 2)).detach()
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        y = f(fwAD.make_dual(x, tangent), *[p.detach() for p in params])
        jvp = fwAD.unpack_dual(y).tangent
    assert jvp is not None
    _, expected = torch.autograd.functional.jvp(lambda t: f(t, *params), (x,), (tangent,))
    assert max_abs(jvp, expected) <= 1e-10


def small_net(bn_cls):
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv2d(3, 4, 3), bn_cls(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 2))


def graph_op_names(graph):
    return {node.kind() for node in graph.nodes()}


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_jit_trace_records_the_operator(mode):
    model = small_net(bt.BatchNorm2d)
    reference = small_net(nn.BatchNorm2d)
    reference.load_state_dict(model.state_dict())
    getattr(model, mode)(), getattr(reference, mode)()
    x = torch.randn(2, 3, 6, 6)
    traced = torch.jit.trace(model, (x,), check_trace=False)
    kinds = graph_op_names(traced.inlined_graph)
    if bt.HAVE_OPERATOR:
        assert "bnorm::batch_norm" in kinds
    else:
        assert "aten::batch_norm" in kinds  # the fallback is torch's own op, never constants
    x2 = torch.randn(2, 3, 6, 6) * 3
    assert max_abs(traced(x2), reference(x2)) <= 1e-5


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_jit_script(mode):
    model = small_net(bt.BatchNorm2d)
    reference = small_net(nn.BatchNorm2d)
    reference.load_state_dict(model.state_dict())
    getattr(model, mode)(), getattr(reference, mode)()
    scripted = torch.jit.script(model)
    if bt.HAVE_OPERATOR:
        assert "bnorm::batch_norm" in graph_op_names(scripted.inlined_graph)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    y = scripted(x)
    assert max_abs(y, reference(x)) <= 1e-5
    y.sum().backward()  # autograd through the scripted operator
    assert x.grad is not None
    buffer = __import__("io").BytesIO()
    torch.jit.save(scripted, buffer)


def test_fx_symbolic_trace():
    model = small_net(bt.BatchNorm2d)
    gm = torch.fx.symbolic_trace(model)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert bt.batch_norm in targets
    reference = small_net(nn.BatchNorm2d)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 6, 6)
    assert max_abs(gm(x), reference(x)) <= 1e-5


def test_onnx_export_maps_to_batch_normalization():
    if not bt.HAVE_OPERATOR:
        pytest.skip(f"operator not built: {bt.OPERATOR_ERROR}")
    # BN first: after a convolution the exporter folds an eval-mode BN into it.
    model = nn.Sequential(bt.BatchNorm2d(3), nn.ReLU()).eval()
    text = torch.onnx.export_to_pretty_string(model, (torch.randn(1, 3, 6, 6),),
                                              opset_version=13)
    assert "BatchNormalization" in text and "bnorm" not in text


def test_convert_real_model_keeps_state_and_trains_the_same():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(5)
    reference = torchvision.models.resnet18(num_classes=10)
    model = __import__("copy").deepcopy(reference)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    bt.convert(model)  # after the optimizer: the same Parameter objects are kept
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 20 and all(type(m) is bt.BatchNorm2d for m in bns)
    x = torch.randn(8, 3, 32, 32)
    target = torch.randint(0, 10, (8,))
    losses = []
    for m, opt in ((model, optimizer), (reference, ref_optimizer)):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), target)
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) <= 1e-5 * abs(losses[1])
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert max_abs(a.grad, b.grad) <= 1e-3 * max(1e-3, b.grad.abs().max().item()), name
    for (name, a), b in zip(model.named_buffers(), reference.buffers()):
        assert max_abs(a.float(), b.float()) <= 1e-5 * max(1.0, b.abs().max().item()), name
    optimizer.step(), ref_optimizer.step()  # the optimizer built before convert updates it
    model.eval(), reference.eval()
    assert max_abs(model(x), reference(x)) <= 1e-4 * reference(x).abs().max().item()
    bt.revert(model)
    assert not any(type(m).__module__.startswith("bnorm") for m in model.modules())
