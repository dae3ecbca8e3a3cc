"""bnorm for PyTorch: drop-in BatchNorm1d/2d/3d and SyncBatchNorm, convert(model), revert(model).

The modules subclass torch.nn.BatchNorm*d (same constructor, parameters, buffers, state_dict keys,
train()/eval(), reset_running_stats(), extra_repr; isinstance checks keep working) and replace
only forward: float32/float64 CPU tensors, contiguous or channels_last, run on bnorm's kernels
through the operator torch.ops.bnorm.batch_norm (a C++ extension compiled against this torch).
Everything else (other dtypes or devices, tensor subclasses, forward-mode AD) runs torch's own
F.batch_norm, so results are never silently wrong: the operator is a real TorchScript operator
(jit.trace and jit.script record it, ONNX export maps it to BatchNormalization), and torch.fx
records bnorm.torch.batch_norm as one call.

When the extension was not built (or was built for another torch), the modules fall back to a
torch.autograd.Function over the NumPy module, and to F.batch_norm while tracing or scripting.
"""

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad as _forward_ad
from typing import Optional


__all__ = [
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm",
    "batch_norm", "convert", "revert", "HAVE_OPERATOR", "OPERATOR_ERROR",
]

_ops = None
OPERATOR_ERROR = None  # why the operator is not used, when it is not
if os.environ.get("BNORM_TORCH_OPERATOR", "1") == "0":
    OPERATOR_ERROR = "disabled by BNORM_TORCH_OPERATOR=0"
else:
    try:
        from . import _torch_ops
        if _torch_ops.torch_version != torch.__version__:
            OPERATOR_ERROR = (f"_torch_ops was compiled against torch {_torch_ops.torch_version}, "
                              f"this is torch {torch.__version__}: rebuild bnorm")
        else:
            _ops = _torch_ops
    except ImportError as error:
        OPERATOR_ERROR = f"_torch_ops did not import: {error}"
HAVE_OPERATOR = _ops is not None

_KERNEL_DTYPES = (torch.float32, torch.float64)


def _torch_must_run(input: Tensor, weight: Optional[Tensor]) -> bool:
    """Cases bnorm does not compute: torch's own batch norm runs them."""
    if type(input) is not torch.Tensor or input.device.type != "cpu":
        return True  # tensor subclasses and fx proxies have their own dispatch; no GPU kernels
    if input.dtype not in _KERNEL_DTYPES or (weight is not None and weight.dtype != input.dtype):
        return True
    if _forward_ad._current_level >= 0:
        return True  # forward-mode AD: torch has the formula, bnorm's operator has none
    if _ops is None and torch._C._get_tracing_state() is not None:
        return True  # an opaque Python call would be traced as constants
    return False


# ---- the eager path ----


@torch.jit.unused
def _batch_norm_eager(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                      weight: Optional[Tensor], bias: Optional[Tensor], training: bool,
                      momentum: float, eps: float) -> Tensor:
    if _torch_must_run(input, weight):
        return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
                            eps)
    if training:
        F._verify_batch_size(input.size())
    if _ops is not None:
        return _ops.batch_norm(input, weight, bias, running_mean, running_var, training,
                               float(momentum), float(eps))
    from ._torch_numpy import numpy_batch_norm
    return numpy_batch_norm(input, weight, bias, running_mean, running_var, training, momentum,
                            eps)


if HAVE_OPERATOR:
    def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                   training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
        """torch.nn.functional.batch_norm on bnorm's kernels (same arguments and result)."""
        if torch.jit.is_scripting():
            return torch.ops.bnorm.batch_norm(input, weight, bias, running_mean, running_var,
                                              training, momentum, eps)
        return _batch_norm_eager(input, running_mean, running_var, weight, bias, training,
                                 momentum, eps)
else:
    def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                   training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
        """torch.nn.functional.batch_norm on bnorm's kernels (same arguments and result)."""
        if torch.jit.is_scripting():
            return F.batch_norm(input, running_mean, running_var, weight, bias, training,
                                momentum, eps)
        return _batch_norm_eager(input, running_mean, running_var, weight, bias, training,
                                 momentum, eps)

# torch.fx records calls to batch_norm as one node instead of tracing into it.
torch.fx.wrap("batch_norm")

if HAVE_OPERATOR:
    def _onnx_batch_norm(g, input, weight, bias, running_mean, running_var, training, momentum,
                         eps):
        from torch.onnx import symbolic_opset9
        return symbolic_opset9.batch_norm(g, input, weight, bias, running_mean, running_var,
                                          training, momentum, eps, False)

    torch.onnx.register_custom_op_symbolic("bnorm::batch_norm", _onnx_batch_norm, 9)


# ---- modules ----


@torch.jit.unused
def _is_fx_proxy(x) -> bool:
    return isinstance(x, torch.fx.Proxy)


class _BnormForward:
    """torch.nn.modules.batchnorm._BatchNorm.forward (torch 1.13) with bnorm's batch_norm."""

    def forward(self, input: Tensor) -> Tensor:
        if torch.jit.is_scripting() or not _is_fx_proxy(input):
            self._check_input_dim(input)  # (torch.fx cannot branch on a traced dim())
        if self.momentum is None:
            exponential_average_factor = 0.0
        else:
            exponential_average_factor = self.momentum
        if self.training and self.track_running_stats:
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative moving average
                    exponential_average_factor = 1.0 / float(self.num_batches_tracked)
                else:
                    exponential_average_factor = self.momentum
        if self.training:
            bn_training = True
        else:
            bn_training = (self.running_mean is None) and (self.running_var is None)
        # Buffers that are not tracked are not updated.
        return batch_norm(
            input,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight, self.bias, bn_training, exponential_average_factor, self.eps)


class BatchNorm1d(_BnormForward, nn.BatchNorm1d):
    """torch.nn.BatchNorm1d on bnorm's kernels: (N, C) or (N, C, L)."""


class BatchNorm2d(_BnormForward, nn.BatchNorm2d):
    """torch.nn.BatchNorm2d on bnorm's kernels: (N, C, H, W), contiguous or channels_last."""


class BatchNorm3d(_BnormForward, nn.BatchNorm3d):
    """torch.nn.BatchNorm3d on bnorm's kernels: (N, C, D, H, W), contiguous or channels_last_3d."""


from ._torch_sync import SyncBatchNorm  # noqa: E402  (needs batch_norm above)

_TO_BNORM = {
    nn.BatchNorm1d: BatchNorm1d,
    nn.BatchNorm2d: BatchNorm2d,
    nn.BatchNorm3d: BatchNorm3d,
    nn.SyncBatchNorm: SyncBatchNorm,
}
_TO_TORCH = {v: k for k, v in _TO_BNORM.items()}


def _swap_classes(module: nn.Module, table) -> nn.Module:
    # Changing the class in place keeps everything a module holds: the same Parameter and buffer
    # objects (so an optimizer built before keeps working), hooks, training flag, device, dtype.
    for m in module.modules():
        cls = table.get(type(m))
        if cls is not None:
            m.__class__ = cls
    return module


def convert(module: nn.Module) -> nn.Module:
    """Makes every torch.nn.BatchNorm1d/2d/3d and SyncBatchNorm in `module` (itself included) run
    on bnorm, in place, keeping its parameters, buffers and state; returns `module`. Subclasses
    of those modules (which may change forward) are left alone."""
    return _swap_classes(module, _TO_BNORM)


def revert(module: nn.Module) -> nn.Module:
    """Undoes convert: every bnorm module becomes its torch.nn class again, in place (so that a
    pickled model does not need bnorm to load); returns `module`."""
    return _swap_classes(module, _TO_TORCH)
