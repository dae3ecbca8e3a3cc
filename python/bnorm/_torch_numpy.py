"""Tensors as NumPy views for bnorm's NumPy module, and the autograd Function over it.

Used by SyncBatchNorm (which communicates between bnorm's phases) and by the modules when the
C++ operator was not built. The backward is bnorm's kernel, except when it is being recorded
(create_graph=True): then `composite_backward` computes it in torch ops, which torch
differentiates again.
"""

import torch
from torch import Tensor

from . import _bnorm


def numpy_view(t: Tensor):
    """(array, axis, memory_format): a zero-copy NumPy view of a CPU tensor (N, C, ...) in the
    layout bnorm reads without copying: contiguous (channel axis 1) or channels_last (a 4-D or
    5-D tensor whose memory is N...C: channel axis -1). Other strides are copied to contiguous."""
    t = t.detach()
    if not t.is_contiguous():
        if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
            return t.permute(0, 2, 3, 1).numpy(), -1, torch.channels_last
        if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
            return t.permute(0, 2, 3, 4, 1).numpy(), -1, torch.channels_last_3d
        t = t.contiguous()
    return t.numpy(), 1, torch.contiguous_format


def like_view(t: Tensor, memory_format):
    """`t` in `memory_format` as a NumPy view (for dy and outputs, which follow x's layout)."""
    t = t.detach().contiguous(memory_format=memory_format)
    if memory_format == torch.channels_last:
        return t, t.permute(0, 2, 3, 1).numpy()
    if memory_format == torch.channels_last_3d:
        return t, t.permute(0, 2, 3, 4, 1).numpy()
    return t, t.numpy()


def empty_like_view(t: Tensor, memory_format):
    out = torch.empty_like(t, memory_format=memory_format)
    return like_view(out, memory_format)


def channel_param(t):
    return None if t is None else t.detach().numpy()


def composite_backward(x, dy, weight, mean, var, training, eps):
    """The batch-norm backward in torch ops, differentiable (training recomputes the statistics
    from x so that their dependence on x is in the graph)."""
    dims = [0] + list(range(2, x.dim()))
    shape = [1, x.size(1)] + [1] * (x.dim() - 2)
    if training:
        centered = x - x.mean(dims, keepdim=True)
        invstd = ((centered * centered).mean(dims, keepdim=True) + eps).rsqrt()
        xhat = centered * invstd
    else:
        invstd = (var + eps).rsqrt().view(shape)
        xhat = (x - mean.view(shape)) * invstd
    dbias = dy.sum(dims)
    dweight = (dy * xhat).sum(dims)
    scale = invstd if weight is None else weight.view(shape) * invstd
    if training:
        count = x.numel() // max(x.size(1), 1)
        dx = scale * (dy - dbias.view(shape) / count - xhat * dweight.view(shape) / count)
    else:
        dx = scale * dy
    return dx, dweight, dbias


class _NumpyBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, training, momentum, eps):
        _bnorm.set_num_threads(torch.get_num_threads())
        x, axis, fmt = numpy_view(input)
        y, y_np = empty_like_view(input, fmt)
        w, b = channel_param(weight), channel_param(bias)
        if training:
            _, mean, var = _bnorm.forward_training(x, w, b, axis=axis, epsilon=eps, out=y_np)
            mean, var = torch.from_numpy(mean), torch.from_numpy(var)
            count = input.numel() // max(input.size(1), 1)
            if count > 0:
                with torch.no_grad():
                    if running_mean is not None:
                        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype),
                                                             alpha=momentum)
                    if running_var is not None:
                        unbiased = var * (count / (count - 1)) if count > 1 else var
                        running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype),
                                                            alpha=momentum)
        else:
            mean = running_mean.detach().to(input.dtype)
            var = running_var.detach().to(input.dtype)
            _bnorm.forward_inference(x, mean.numpy(), var.numpy(), w, b, axis=axis, epsilon=eps,
                                     out=y_np)
        ctx.save_for_backward(input, weight, mean, var)
        ctx.training, ctx.eps = training, eps
        return y

    @staticmethod
    def backward(ctx, dy):
        input, weight, mean, var = ctx.saved_tensors
        if not ctx.training or torch.is_grad_enabled():
            dx, dweight, dbias = composite_backward(input, dy, weight, mean, var, ctx.training,
                                                    ctx.eps)
        else:
            _bnorm.set_num_threads(torch.get_num_threads())
            x, axis, fmt = numpy_view(input)
            _, dy_np = like_view(dy, fmt)
            dx, dx_np = empty_like_view(input, fmt)
            _, dweight, dbias = _bnorm.backward(x, dy_np, mean.numpy(), var.numpy(),
                                                channel_param(weight), axis=axis,
                                                epsilon=ctx.eps, out=dx_np)
            dweight, dbias = torch.from_numpy(dweight), torch.from_numpy(dbias)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dweight if need[1] else None,
                dbias if need[2] else None, None, None, None, None, None)


def numpy_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps):
    return _NumpyBatchNorm.apply(input, weight, bias, running_mean, running_var, training,
                                 momentum, eps)
