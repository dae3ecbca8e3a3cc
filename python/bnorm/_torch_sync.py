"""SyncBatchNorm on CPU over torch.distributed (gloo): statistics of the whole process group's
batch, equal to one process holding the concatenated batch (uneven batches and ranks with no
samples included).

Forward: each rank's (count, mean, M2) per channel (bnorm.channel_moments) is all-gathered and
merged in rank order with Chan's formula (bnorm.merge_ranks): exact, deterministic, and identical
on every rank, with no E[x^2] - E[x]^2 cancellation. Backward: sum dy and sum dy * x_hat are
all-reduced (one collective) and dx uses the global count (bnorm.backward_input).
Parameter gradients are this rank's sums, as torch.nn.SyncBatchNorm returns them:
DistributedDataParallel then averages them across ranks.
"""

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import _bnorm
from ._torch_numpy import channel_param, empty_like_view, like_view, numpy_view


class _SyncBatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, eps, momentum,
                process_group, world_size):
        _bnorm.set_num_threads(torch.get_num_threads())
        x, axis, fmt = numpy_view(input)
        local = torch.from_numpy(_bnorm.channel_moments(x, axis=axis))
        gathered = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(gathered, local, group=process_group)
        merged = _bnorm.merge_ranks(torch.stack(gathered).numpy())
        channels = input.size(1)
        count = float(merged[0, 0]) if channels > 0 else 0.0
        if count <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got "
                             f"{count:g} in the whole process group (input size {input.size()})")
        mean64 = merged[:, 1].copy()
        var64 = merged[:, 2] / count
        y, y_np = empty_like_view(input, fmt)
        _bnorm.normalize(x, mean64, var64, channel_param(weight), channel_param(bias), axis=axis,
                         epsilon=eps, out=y_np)
        with torch.no_grad():
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_(
                    torch.from_numpy(mean64).to(running_mean.dtype), alpha=momentum)
            if running_var is not None:
                unbiased = torch.from_numpy(merged[:, 2] / (count - 1))
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype),
                                                    alpha=momentum)
        mean = torch.from_numpy(mean64).to(input.dtype)
        var = torch.from_numpy(var64).to(input.dtype)
        ctx.save_for_backward(input, weight, mean, var)
        ctx.eps, ctx.count, ctx.group = eps, count, process_group
        return y

    # torch.nn.SyncBatchNorm's backward is not differentiable again either; once_differentiable
    # makes a double backward raise instead of returning a wrong second derivative.
    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        input, weight, mean, var = ctx.saved_tensors
        _bnorm.set_num_threads(torch.get_num_threads())
        x, axis, fmt = numpy_view(input)
        _, dy_np = like_view(dy, fmt)
        mean_np, var_np = mean.numpy(), var.numpy()
        sum_dy, sum_dy_xhat = _bnorm.backward_sums(x, dy_np, mean_np, var_np, axis=axis,
                                                   epsilon=ctx.eps)
        need = ctx.needs_input_grad
        dweight = torch.from_numpy(sum_dy_xhat).to(input.dtype) if need[1] else None
        dbias = torch.from_numpy(sum_dy).to(input.dtype) if need[2] else None
        dx = None
        if need[0]:
            sums = torch.from_numpy(np.concatenate([sum_dy, sum_dy_xhat]))
            dist.all_reduce(sums, group=ctx.group)
            channels = sum_dy.shape[0]
            dx, dx_np = empty_like_view(input, fmt)
            _bnorm.backward_input(x, dy_np, mean_np, var_np, sums[:channels].numpy(),
                                  sums[channels:].numpy(), ctx.count, channel_param(weight),
                                  axis=axis, epsilon=ctx.eps, out=dx_np)
        return dx, dweight, dbias, None, None, None, None, None, None


class SyncBatchNorm(nn.SyncBatchNorm):
    """torch.nn.SyncBatchNorm on CPU: same constructor (process_group included), parameters,
    buffers and state_dict; statistics synchronized over torch.distributed (any backend whose
    all_gather and all_reduce take CPU tensors: gloo) in training. Outside a process group of
    two or more, and in eval mode, it is bnorm's BatchNorm."""

    def forward(self, input):
        self._check_input_dim(input)
        self._check_non_zero_input_channels(input)
        if self.momentum is None:
            exponential_average_factor = 0.0
        else:
            exponential_average_factor = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                exponential_average_factor = 1.0 / self.num_batches_tracked.item()
            else:
                exponential_average_factor = self.momentum
        if self.training:
            bn_training = True
        else:
            bn_training = (self.running_mean is None) and (self.running_var is None)
        running_mean = self.running_mean if not self.training or self.track_running_stats else None
        running_var = self.running_var if not self.training or self.track_running_stats else None

        group, world_size = None, 1
        if bn_training and self.training and dist.is_available() and dist.is_initialized():
            group = self.process_group if self.process_group else dist.group.WORLD
            world_size = dist.get_world_size(group)
        from .torch import batch_norm
        if world_size <= 1 or input.dtype not in (torch.float32, torch.float64) \
                or input.device.type != "cpu":
            if world_size > 1:
                raise ValueError("bnorm.torch.SyncBatchNorm synchronizes float32/float64 CPU "
                                 f"tensors; got {input.dtype} on {input.device}")
            return batch_norm(input, running_mean, running_var, self.weight, self.bias,
                              bn_training, exponential_average_factor, self.eps)
        return _SyncBatchNormFunction.apply(input, self.weight, self.bias, running_mean,
                                            running_var, self.eps, exponential_average_factor,
                                            group, world_size)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Like torch.nn.SyncBatchNorm.convert_sync_batchnorm, to bnorm's SyncBatchNorm."""
        output = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            output = cls(module.num_features, module.eps, module.momentum, module.affine,
                         module.track_running_stats, process_group)
            if module.affine:
                with torch.no_grad():
                    output.weight = module.weight
                    output.bias = module.bias
            output.running_mean = module.running_mean
            output.running_var = module.running_var
            output.num_batches_tracked = module.num_batches_tracked
            output.training = module.training
            if hasattr(module, "qconfig"):
                output.qconfig = module.qconfig
        for name, child in module.named_children():
            output.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        del module
        return output
