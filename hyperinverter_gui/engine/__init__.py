"""The one application service: :class:`Engine` owns the models and the device, inverts photos
(HyperInverter or HyperStyle), renders edited frames with the one production renderer
(``renderer.EditRenderer``), interpolates, and falls back when memory runs out. The command line,
the editor, and everything else call it; ``reference`` keeps the readable forward passes the
tests compare against. One thread runs an engine's calls (see ``engine.Engine``).
May import: everything below it; never ``app``, ``cli`` or ``_qt``.
"""

from hyperinverter_gui.engine.cancel import Cancelled, CancelToken
from hyperinverter_gui.engine.engine import BACKENDS, Engine, EngineBusyError, EngineInfo, ModelFiles, ModelMissingError

__all__ = ["BACKENDS", "CancelToken", "Cancelled", "Engine", "EngineBusyError", "EngineInfo", "ModelFiles",
           "ModelMissingError"]
