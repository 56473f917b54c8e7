"""The neural networks as small ``torch.nn`` layer classes: StyleGAN2, the pSp/e4e encoders,
the HyperInverter hypernetwork, HyperStyle, and their reference ops.

They know nothing of files, devices, Qt or the application. May import: nothing of ours
(``hyperinverter_gui.errors`` at most).
"""


from hyperinverter_gui.networks.hyperinverter import HyperInverter, HyperInverterConfig
from hyperinverter_gui.networks.hypernetwork import Hypernetwork, TargetLayer
from hyperinverter_gui.networks.stylegan2 import Generator, GeneratorConfig

__all__ = ["Generator", "GeneratorConfig", "HyperInverter", "HyperInverterConfig", "Hypernetwork", "TargetLayer"]
