"""mnist-edge: handwritten-digit CNNs from PyTorch to bit-exact int8 on MCUs and FPGAs."""

__version__ = "0.1.0"
