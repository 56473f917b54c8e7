"""What an inversion is: :class:`InversionResult` (w, the weight deltas Δθ as
:class:`WeightDeltas`, the Phase-I and final images, metadata) and its ``.safetensors`` file
format. May import: ``media``, ``errors``.
"""
