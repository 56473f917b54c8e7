"""HyperInverter Studio: edit real face photos with HyperInverter and StyleGAN2."""

__version__ = "0.1.0"
