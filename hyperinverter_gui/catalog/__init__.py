"""Which model files exist and where: identification by content and the choice per role
(``discovery``), the manifest of published models (``models.toml``, package data), resumable
checksummed downloads (``download``) and the converted-model cache (``cache``).
May import: ``formats``, ``networks``, ``media``, ``host``, ``errors``.
"""
