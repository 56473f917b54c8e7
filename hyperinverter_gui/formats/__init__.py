"""Model file readers and converters: the restricted unpickler, NVIDIA stylegan2-ada-pytorch and
TensorFlow StyleGAN2 pickles, rosinality ``.pt`` files, HyperInverter/HyperStyle checkpoints
(``torch.load(weights_only=True)``), and the loaders that build ``networks`` from them.
Nothing here executes code from a model file. May import: ``networks``, ``errors``.
"""

