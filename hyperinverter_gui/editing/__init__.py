"""What can be done to an inversion: directions (InterFaceGAN, GANSpace), ``apply_edits``,
the interpolation of latent codes and weights (``edits``), and the slider library with its
packaged manifest (``library``, ``directions.toml``). Pure tensor maths: rendering is the
engine's. May import: ``inversion``, ``formats``, ``media``, ``host``, ``errors``.
"""
