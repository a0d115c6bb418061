"""What the project knows of each face recognizer, as plain data (no torch, so that config.py can read it):
its registry name, its class, the weight files it loads, the face size it reads and whether gradients
pass through it. config.py takes the allowed names from here and ivfg/models/registry.py builds the
networks from it: adding a recognizer is one entry here and its class in ivfg/models/recognizers.py."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecognizerSpec:
    name: str
    cls: str                  # its class in ivfg.models.recognizers
    weights: tuple[str, ...]  # the weight files (WEIGHT_NAMES) its class loads, in order
    input_size: int           # side in pixels of the face it reads (resized from the 128x128 frame)
    differentiable: bool      # gradients pass through it: usable as R inside the training losses


RECOGNIZERS: dict[str, RecognizerSpec] = {spec.name: spec for spec in (
    RecognizerSpec("sface", "SFace", ("sface",), 112, True),
    RecognizerSpec("facenet-vggface2", "FaceNet", ("facenet-vggface2",), 160, True),
    RecognizerSpec("facenet-casia", "FaceNet", ("facenet-casia",), 160, True),
    RecognizerSpec("dlib-resnet", "DlibResNet", ("dlib-resnet", "dlib-landmarks5"), 150, False),
)}
# Every weight file the registry can find: the recognizers' and Inception's for FID.
WEIGHT_NAMES: tuple[str, ...] = (*dict.fromkeys(w for spec in RECOGNIZERS.values() for w in spec.weights),
                                 "fid-inception")
