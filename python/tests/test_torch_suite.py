"""PyTorch's own batch-norm test definitions, as Debian's python3-torch ships them, run against
bnorm's drop-in modules: torch.testing._internal.common_nn (module_tests and new_module_tests
entries for BatchNorm1d/2d/3d) and common_modules.module_db (the BatchNorm ModuleInfos).

Each definition's module is built twice, torch's and bnorm's, with the same constructor arguments
and state; both run the definition's inputs in training (twice, so running statistics
accumulate) and eval mode, and must agree on outputs, input and parameter gradients and buffers.
In float64, gradcheck (finite differences) also checks bnorm's gradients directly.
"""

import sys
import types
import unittest

import pytest

from torch_helpers import bt, max_abs, torch

nn = torch.nn

# torch.testing._internal.common_utils imports expecttest (a PyTorch test dependency that Debian
# does not package); the definitions used here need only its TestCase base class.
if "expecttest" not in sys.modules:
    try:
        import expecttest  # noqa: F401
    except ImportError:
        stub = types.ModuleType("expecttest")
        stub.TestCase = unittest.TestCase
        stub.ACCEPT = False
        sys.modules["expecttest"] = stub

common_nn = pytest.importorskip("torch.testing._internal.common_nn")
common_modules = pytest.importorskip("torch.testing._internal.common_modules")


def batch_norm_definitions():
    for test in common_nn.module_tests + common_nn.new_module_tests:
        name = test.get("module_name", "")
        if name.startswith("BatchNorm"):
            yield pytest.param(test, id=f"{name}_{test.get('desc', 'default')}")


def twins(name, args, kwargs, dtype):
    torch.manual_seed(0)
    theirs = getattr(nn, name)(*args, **kwargs).to(dtype)
    ours = getattr(bt, name)(*args, **kwargs).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    if theirs.affine:  # parameters that are not 1 and 0, so a swapped gamma/beta would show
        with torch.no_grad():
            w = torch.rand_like(theirs.weight) + 0.5
            b = torch.randn_like(theirs.bias)
            theirs.weight.copy_(w), ours.weight.copy_(w)
            theirs.bias.copy_(b), ours.bias.copy_(b)
    return ours, theirs


def agree(ours, theirs, x, tol):
    xa = x.detach().clone().requires_grad_(x.is_floating_point())
    xb = x.detach().clone().requires_grad_(x.is_floating_point())
    ya, yb = ours(xa), theirs(xb)
    assert ya.shape == yb.shape
    assert max_abs(ya, yb) <= tol, "output"
    if ya.numel():
        dy = torch.randn_like(ya)
        ya.backward(dy)
        yb.backward(dy)
        assert max_abs(xa.grad, xb.grad) <= tol * 10, "input gradient"
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        if a.grad is not None or b.grad is not None:
            assert max_abs(a.grad, b.grad) <= tol * 10 * max(1, x.numel()) ** 0.5, name
            a.grad = b.grad = None
    for (name, a), b in zip(ours.named_buffers(), theirs.buffers()):
        assert max_abs(a.double(), b.double()) <= tol, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("test", batch_norm_definitions())
def test_common_nn_definition(test, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-11
    ours, theirs = twins(test["module_name"], test.get("constructor_args", ()), {}, dtype)
    torch.manual_seed(1)
    for _ in range(2):
        agree(ours, theirs, torch.randn(test["input_size"], dtype=dtype) * 2 + 1, tol)
    if test.get("check_eval"):
        ours.eval(), theirs.eval()
        agree(ours, theirs, torch.randn(test["input_size"], dtype=dtype), tol)
    if dtype == torch.float64 and all(s > 0 for s in test["input_size"]):
        ours.train()
        x = torch.randn(test["input_size"], dtype=dtype, requires_grad=True)
        params = [p for p in ours.parameters()]
        assert torch.autograd.gradcheck(lambda x, *p: ours(x), (x, *params))


def module_db_cases():
    for info in common_modules.module_db:
        if "BatchNorm" in info.name:
            yield pytest.param(info, id=info.name)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("info", module_db_cases())
def test_module_db_info(info, training):
    name = info.module_cls.__name__
    dtype = torch.float64
    inputs = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                     training=training)
    assert inputs, "the ModuleInfo yields no inputs"
    for module_input in inputs:
        ctor = module_input.constructor_input
        ours, theirs = twins(name, ctor.args, ctor.kwargs, dtype)
        ours.train(training), theirs.train(training)
        (x,) = module_input.forward_input.args
        agree(ours, theirs, x, 1e-11)
