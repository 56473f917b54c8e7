"""User-facing errors of the alignment tools (all are ``HyperInverterError``)."""

from __future__ import annotations

from hyperinverter_gui.errors import HyperInverterError

MANUAL_HINT = (
    "give the landmarks by hand instead: --landmarks x1,y1,...,x5,y5 "
    "(left eye, right eye, nose tip, left mouth corner, right mouth corner; the nose may be left out), "
    "in pixels of the upright photo"
)


class AlignmentError(HyperInverterError):
    """Base class for problems while finding or aligning a face."""


class NoFaceError(AlignmentError):
    """No face could be found in the photo."""


class FaceIndexError(AlignmentError):
    """A face number outside the faces that were found."""


class LandmarkError(AlignmentError):
    """Landmarks given by hand (or in a file) cannot be used."""


class DetectorUnavailableError(AlignmentError):
    """A detector that was asked for explicitly cannot run here."""


class TransformFileError(AlignmentError):
    """An alignment transform (JSON) is missing, corrupt or does not fit the photo."""
