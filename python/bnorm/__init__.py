"""bnorm: exact, fast batch normalization (C++) for NumPy and PyTorch.

NumPy level (this module): the functional API on C-contiguous float32/float64 arrays of any rank
with a channel ``axis`` (zero-copy; outputs allocated or passed as ``out=``; the GIL is released
while the kernels run; errors raise ValueError with bnorm's message), the fused BN+ReLU and
BN+Add+ReLU variants, the phases (for callers that communicate between them), and the layer
``BatchNorm`` with Keras and PyTorch conventions by keyword.

PyTorch level: ``bnorm.torch`` (imported on demand: ``import bnorm.torch``) has drop-in
``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, ``convert(model)`` and ``revert(model)``.

docs/python.md has the API, the guarantees and the measured figures.
"""

try:
    from . import _bnorm
except ImportError as error:  # pragma: no cover - a source tree without the compiled module
    raise ImportError(
        "bnorm's compiled module (_bnorm) is missing: build it with CMake "
        "(cmake -S . -B build/release && cmake --build build/release) and use "
        "PYTHONPATH=build/release/python, or pip install --no-build-isolation ."
    ) from error

from ._bnorm import (  # noqa: F401  (the public NumPy API)
    BatchNormFloat32,
    BatchNormFloat64,
    BatchNormOptions,
    Constraint,
    Initializer,
    MomentumConvention,
    MovingVariance,
    Regularizer,
    RenormClipping,
    SingleValuePolicy,
    backward,
    backward_add_relu,
    backward_input,
    backward_relu,
    backward_relu_from_y,
    backward_sums,
    channel_moments,
    forced_kernel,
    forward_inference,
    forward_inference_relu,
    forward_training,
    forward_training_add_relu,
    forward_training_relu,
    get_num_threads,
    kernel_names,
    merge_ranks,
    normalize,
    set_kernel,
    set_num_threads,
)

__version__ = "0.1.0"

_ENUMS = {
    "momentum_convention": MomentumConvention,
    "moving_variance": MovingVariance,
    "single_value": SingleValuePolicy,
}


def _option_value(name, value):
    """Accepts enum members or their names ('keras', 'unbiased', ...) and Keras-style tuples."""
    if name in _ENUMS and isinstance(value, str):
        try:
            return _ENUMS[name].__members__[value]
        except KeyError:
            raise ValueError(
                f"{name}={value!r}: expected one of {sorted(_ENUMS[name].__members__)}"
            ) from None
    if name == "renorm_clipping" and isinstance(value, dict):
        return RenormClipping(**value)
    if name.endswith("_regularizer") and isinstance(value, dict):
        return Regularizer(**value)
    return value


def batch_norm_options(preset="keras", **options):
    """BatchNormOptions from a preset ('keras' or 'pytorch') and keyword overrides.

    The 'pytorch' preset takes PyTorch's names too: momentum (None = cumulative average),
    affine, track_running_stats, eps.
    """
    if preset == "keras":
        opts = BatchNormOptions.keras()
    elif preset == "pytorch":
        torch_args = {k: options.pop(k) for k in ("affine", "track_running_stats") if k in options}
        if "momentum" in options:
            torch_args["momentum"] = options.pop("momentum")
        opts = BatchNormOptions.pytorch(**torch_args)
        if "eps" in options:
            options["epsilon"] = options.pop("eps")
        else:
            options.setdefault("epsilon", 1e-5)
    else:
        raise ValueError(f"preset={preset!r}: expected 'keras' or 'pytorch'")
    for name, value in options.items():
        if not hasattr(opts, name) or name.startswith("_"):
            raise ValueError(f"unknown BatchNorm option {name!r}")
        setattr(opts, name, _option_value(name, value))
    opts.validate()
    return opts


def BatchNorm(channels, *, dtype="float32", preset="keras", **options):
    """The bnorm layer for NumPy arrays: BatchNormFloat32 or BatchNormFloat64.

    ``BatchNorm(64)`` is Keras' BatchNormalization (axis -1, momentum 0.99, epsilon 1e-3);
    ``BatchNorm(64, preset="pytorch")`` is torch.nn.BatchNorm*d (axis 1, momentum 0.1, eps 1e-5,
    unbiased running variance). Any option of BatchNormOptions can be given by keyword, enums by
    name (momentum_convention="pytorch", moving_variance="unbiased", single_value="error").
    """
    import numpy as np

    opts = batch_norm_options(preset, **options)
    kind = np.dtype(dtype)
    if kind == np.float32:
        return BatchNormFloat32(channels, opts)
    if kind == np.float64:
        return BatchNormFloat64(channels, opts)
    raise ValueError(f"dtype={kind}: bnorm's layer holds float32 or float64")
