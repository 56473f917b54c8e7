"""Image and animation files: reading photos, converting tensors to 8-bit images, PNG with text
metadata, GIF/MP4, and atomic writes (temporary file + rename). May import: ``errors``.
"""
