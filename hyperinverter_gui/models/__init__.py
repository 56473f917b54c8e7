"""Pure-PyTorch networks: StyleGAN2 generator, HyperInverter encoders and hypernetwork."""

from .hyperinverter import HyperInverter, HyperInverterConfig
from .hypernetwork import Hypernetwork, TargetLayer
from .stylegan2 import Generator, GeneratorConfig

__all__ = ["Generator", "GeneratorConfig", "HyperInverter", "HyperInverterConfig", "Hypernetwork", "TargetLayer"]
