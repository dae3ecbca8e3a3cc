import numpy as np
import torch

import bnorm
import bnorm.torch

# NumPy: statistics over every axis but the channel axis; zero-copy on C-contiguous arrays.
x = np.random.default_rng(0).standard_normal((32, 16, 8, 8)).astype(np.float32)
y, mean, variance = bnorm.forward_training(x, axis=1, epsilon=1e-5)
print("NumPy:", y.shape, "max |mean of y| =", float(np.abs(y.mean(axis=(0, 2, 3))).max()))

# PyTorch: every BatchNorm*d of a model runs on bnorm, keeping its parameters and statistics.
model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
bnorm.torch.convert(model)
images = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
model(images).sum().backward()
print("PyTorch:", type(model[1]).__name__, "weight grad", tuple(model[1].weight.grad.shape))
bnorm.torch.revert(model)  # plain torch.nn modules again: a pickle of it needs no bnorm
