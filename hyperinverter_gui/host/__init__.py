"""Machine-specific tweaks and per-user folders.

``allocator`` keeps freed memory in the process (glibc), ``memory`` hands memory-mapped weight
pages back to the OS, ``paths`` says where user data, caches and logs live. May import:
``hyperinverter_gui.errors`` only.
"""
