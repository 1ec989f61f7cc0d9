"""nas: differentiable neural architecture search (DARTS and ASAP) on PyTorch."""

__version__ = "0.1.0"
