"""Face alignment for real photos (the FFHQ recipe) and pasting edited faces back.

Typical use::

    photo = load_photo("me.jpg")                 # upright 8-bit RGB + ICC/EXIF/alpha
    found = detect_faces(photo.rgb)              # FAN, dlib, or the Haar fallback (found.message says why)
    aligned = align_face(photo.rgb, found.face(0), output_size=1024)
    ...edit aligned.image...
    result = paste_back(photo.rgb, edited, aligned.transform)
    save_photo("me_edited.jpg", result, like=photo)

No Qt here; everything works headless.
"""

from hyperinverter_gui.alignment.detect import (
    SOURCES,
    DetectionResult,
    Face,
    auto_source,
    clear_detector_cache,
    describe_source,
    detect_faces,
    face_from_points,
    fan_weights_dir,
    fan_weights_present,
    landmark_source_lines,
    manual_result,
)
from hyperinverter_gui.alignment.errors import (
    AlignmentError,
    DetectorUnavailableError,
    FaceIndexError,
    LandmarkError,
    NoFaceError,
    TransformFileError,
)
from hyperinverter_gui.alignment.geometry import (
    POINT_NAMES,
    AlignTransform,
    as_points5,
    expected_positions,
    ffhq_quad,
    points5_from_68,
)
from hyperinverter_gui.alignment.photo import Photo, as_rgb_uint8, load_photo, save_photo
from hyperinverter_gui.alignment.track import FaceTracker, box_iou, match_face
from hyperinverter_gui.alignment.warp import AlignedFace, align_face, aligned_mask, paste_back, paste_mask

__all__ = [
    "AlignTransform",
    "AlignedFace",
    "AlignmentError",
    "DetectionResult",
    "DetectorUnavailableError",
    "Face",
    "FaceIndexError",
    "FaceTracker",
    "LandmarkError",
    "NoFaceError",
    "POINT_NAMES",
    "Photo",
    "SOURCES",
    "TransformFileError",
    "align_face",
    "aligned_mask",
    "as_points5",
    "as_rgb_uint8",
    "auto_source",
    "box_iou",
    "clear_detector_cache",
    "describe_source",
    "detect_faces",
    "expected_positions",
    "face_from_points",
    "fan_weights_dir",
    "fan_weights_present",
    "ffhq_quad",
    "landmark_source_lines",
    "load_photo",
    "manual_result",
    "match_face",
    "paste_back",
    "paste_mask",
    "points5_from_68",
    "save_photo",
]
