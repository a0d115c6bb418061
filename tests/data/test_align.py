"""ivfg.data.align: real MTCNN (facenet-pytorch, CPU) on real LFW images and on the files real folders hold."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivfg.config import AlignConfig
from ivfg.data.align import INDEX_COLUMNS, align_directory, load_rgb, pick_central
from ivfg.data.files import read_index
from ivfg.data.faceframe import template, warp_to_frame
from ivfg.errors import InputError
from tests.helpers import LfwSubset

pytestmark = pytest.mark.slow

FACES = {"RGB": 4, "L": 1, "CMYK": 1, "RGBA": 1}
BAD = {
    "Broken_Jpeg/Broken_Jpeg_0001.jpg": "unreadable: ",
    "Not_An_Image/Not_An_Image_0001.jpg": "unreadable: UnidentifiedImageError",
    "Random_Noise/Random_Noise_0001.png": "no face detected",
    "Tiny_Image/Tiny_Image_0001.jpg": "too small: 19x19 is below align.min_face_size",
    "Dir_Person/Dir_Person_0001.jpg": "a directory, not an image",
}


def open_jpeg(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


@pytest.fixture(scope="module")
def mixed_folder(lfw_subset: LfwSubset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a user's: real faces in RGB, L, CMYK and RGBA, and files that are not faces at all."""
    root = tmp_path_factory.mktemp("mixed") / "images"

    def put(relative: str) -> Path:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    for identity in lfw_subset.multi[:4]:  # original LFW JPEG bytes
        put(f"{identity}/{lfw_subset.images[identity][0]}").write_bytes(lfw_subset.image_bytes(identity))
    gray, cmyk, rgba = lfw_subset.single[:3]
    open_jpeg(lfw_subset.image_bytes(gray)).convert("L").save(put(f"{gray}/{gray}_0001.jpg"), quality=95)
    open_jpeg(lfw_subset.image_bytes(cmyk)).convert("CMYK").save(put(f"{cmyk}/{cmyk}_0001.jpg"), quality=95)
    face = open_jpeg(lfw_subset.image_bytes(rgba)).resize((200, 200))  # another size: a second MTCNN batch
    alpha = Image.new("L", face.size, 255)
    alpha.paste(0, (0, 0, 200, 12))  # a transparent strip along the top
    face.putalpha(alpha)
    face.save(put(f"{rgba}/{rgba}_0001.png"))

    jpeg = lfw_subset.image_bytes(lfw_subset.multi[4])
    put("Broken_Jpeg/Broken_Jpeg_0001.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    put("Not_An_Image/Not_An_Image_0001.jpg").write_text("this is a text file with a .jpg name\n")
    noise = np.random.default_rng(0).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    Image.fromarray(noise).save(put("Random_Noise/Random_Noise_0001.png"))
    put("README.txt").write_text("not an image suffix: ignored\n")
    # Smaller than the smallest face MTCNN looks for: its scale pyramid would be empty.
    open_jpeg(lfw_subset.image_bytes(lfw_subset.multi[5])).resize((19, 19)).save(put("Tiny_Image/Tiny_Image_0001.jpg"))
    put("Dir_Person/Dir_Person_0001.jpg").mkdir()  # a directory named like an image
    return root


@pytest.fixture(scope="module")
def aligned(mixed_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("aligned") / "aligned"
    figures = align_directory(mixed_folder, out, AlignConfig(device="cpu", workers=0, batch_size=4))
    return out, figures


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_figures_count_every_file(aligned):
    _, figures = aligned
    n_faces = sum(FACES.values())
    assert figures["images"] == n_faces + len(BAD)
    assert figures["aligned"] == n_faces
    assert figures["failed"] == len(BAD)
    assert figures["no_face"] == 1
    assert figures["unreadable"] == 2
    assert figures["too_small"] == 1 and figures["directories"] == 1 and figures["shrunk"] == 0
    assert figures["identities"] == n_faces
    assert figures["aligned_fraction"] == pytest.approx(n_faces / (n_faces + len(BAD)))
    assert figures["device"] == "cpu"
    assert figures["seconds"] > 0 and figures["images_per_second"] > 0


def test_outputs_are_canonical_crops(aligned, mixed_folder: Path):
    out, _ = aligned
    assert sorted(p.name for p in out.iterdir()) == ["failures.csv", "images", "index.csv", "report.json"]
    crops = sorted((out / "images").glob("*/*.png"))
    assert len(crops) == sum(FACES.values())
    for crop in crops:
        with Image.open(crop) as img:
            assert img.size == (128, 128) and img.mode == "RGB"
        # same identity folder and file stem as the source
        assert list(mixed_folder.glob(f"{crop.parent.name}/{crop.stem}.*"))
    assert [p.name for p in out.parent.iterdir()] == ["aligned"]  # no temporary directory left


def test_index_lists_boxes_and_landmarks(aligned, mixed_folder: Path):
    out, _ = aligned
    with open(out / "index.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == INDEX_COLUMNS
    assert len(set(header)) == len(header)  # a DictReader must not lose the box to a landmark column
    rows = read_index(out / "index.csv")
    assert len(rows) == sum(FACES.values())
    for row in rows:
        assert (out / row["image"]).is_file()
        assert (mixed_folder / row["source"]).is_file()
        assert row["identity"] == Path(row["source"]).parts[0]
        assert float(row["prob"]) > 0.9 and int(row["faces"]) >= 1
        with Image.open(mixed_folder / row["source"]) as img:
            width, height = img.size
        x1, y1, x2, y2 = (float(row[k]) for k in ("box_x1", "box_y1", "box_x2", "box_y2"))
        assert x1 < x2 and y1 < y2
        points = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(5)])
        assert ((points >= 0) & (points <= [width, height])).all()
        # landmarks are inside the box, eyes above the mouth, left eye left of the right eye
        assert ((points >= [x1 - 2, y1 - 2]) & (points <= [x2 + 2, y2 + 2])).all()
        assert points[0, 0] < points[1, 0] and points[:2, 1].max() < points[3:, 1].min()


def test_index_landmarks_reproduce_the_saved_crop(aligned, mixed_folder: Path):
    out, _ = aligned
    for row in read_index(out / "index.csv"):
        source, _ = load_rgb(mixed_folder / row["source"])
        points = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(5)])
        again = np.asarray(warp_to_frame(source, points, 128)).astype(float)
        saved = np.asarray(Image.open(out / row["image"]).convert("RGB")).astype(float)
        assert np.abs(again - saved).mean() < 1.0, row["image"]  # landmarks are stored to 0.01 px


def test_failures_are_listed_with_reasons(aligned):
    out, _ = aligned
    failures = {r["source"]: r for r in read_csv(out / "failures.csv")}
    assert set(failures) == set(BAD)
    for source, reason in BAD.items():
        assert failures[source]["reason"].startswith(reason), failures[source]
        assert failures[source]["identity"] == source.split("/")[0]
    assert "truncated" in failures["Broken_Jpeg/Broken_Jpeg_0001.jpg"]["reason"]


def test_report_records_input_modes(aligned):
    out, figures = aligned
    report = json.loads((out / "report.json").read_text())
    # every decodable input, faces or not (the noise image is an RGB PNG)
    assert report["input_modes"] == {**FACES, "RGB": FACES["RGB"] + 1}
    run_only = ("seconds", "images_per_second", "device")  # how the run went: metrics only
    assert {k: v for k, v in report.items() if k != "input_modes"} == pytest.approx(
        {k: v for k, v in figures.items() if k not in run_only})


def test_a_second_run_elsewhere_writes_byte_identical_outputs(aligned, mixed_folder: Path, tmp_path: Path):
    """DVC hashes the whole folder: anything run- or location-dependent in it (a timing, an absolute
    path in a failure's reason) would give each checkout its own hash and rerun every downstream stage."""
    out, _ = aligned
    elsewhere = tmp_path / "another" / "checkout" / "images"
    shutil.copytree(mixed_folder, elsewhere)
    again = tmp_path / "aligned"
    align_directory(elsewhere, again, AlignConfig(device="cpu", workers=0, batch_size=4))
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_a_huge_photo_is_shrunk_before_detection(lfw_subset: LfwSubset, tmp_path: Path):
    """Detection runs at align.max_image_side; the index still gives the source photo's pixels."""
    identity = lfw_subset.multi[0]
    face = open_jpeg(lfw_subset.image_bytes(identity))
    root = tmp_path / "images"
    for name, size in (("small", 250), ("huge", 2500)):
        (root / name).mkdir(parents=True)
        face.resize((size, size), Image.Resampling.BICUBIC).save(root / name / f"{name}_0001.jpg", quality=95)
    cfg = AlignConfig(device="cpu", workers=0, max_image_side=500)
    figures = align_directory(root, tmp_path / "aligned", cfg)
    assert figures["aligned"] == 2 and figures["shrunk"] == 1
    rows = {r["identity"]: r for r in read_index(tmp_path / "aligned" / "index.csv")}
    for i in range(5):
        for axis in "xy":
            # the same face at 10x the size: landmarks 10x further out (to within detection noise)
            assert float(rows["huge"][f"{axis}{i}"]) == pytest.approx(10 * float(rows["small"][f"{axis}{i}"]), abs=25)
    crops = [np.asarray(Image.open(tmp_path / "aligned" / "images" / n / f"{n}_0001.png")).astype(float)
             for n in ("small", "huge")]
    assert np.abs(crops[0] - crops[1]).mean() < 12  # the same face in the same frame


def test_load_rgb_shrinks_a_jpeg_while_decoding(tmp_path: Path):
    Image.new("RGB", (4000, 3000), (90, 120, 150)).save(tmp_path / "big.jpg", quality=90)
    img, mode = load_rgb(tmp_path / "big.jpg", max_side=1000)
    assert max(img.size) == 1000 and img.size == (1000, 750) and mode == "RGB"
    assert load_rgb(tmp_path / "big.jpg")[0].size == (4000, 3000)


def test_grayscale_input_stays_gray(aligned, lfw_subset: LfwSubset):
    out, _ = aligned
    gray = lfw_subset.single[0]
    pixels = np.asarray(Image.open(out / "images" / gray / f"{gray}_0001.png")).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 1 and np.abs(pixels[..., 1] - pixels[..., 2]).max() <= 1
    assert pixels.std() > 10  # a face, not a blank


def test_aligned_eyes_sit_on_the_template(aligned, aligner):
    """Detect again on the aligned crops: MTCNN finds the eyes where the canonical frame puts them."""
    out, _ = aligned
    crops = [Image.open(p).convert("RGB") for p in sorted((out / "images").glob("*/*.png"))]
    detections = aligner.detect(crops)
    assert all(d is not None for d in detections)
    eyes = template(128)[:2]
    errors = np.array([np.linalg.norm(d.landmarks[:2] - eyes, axis=1) for d in detections])
    # MTCNN's landmarks on a tight crop differ from those on the full photo by a few pixels, and a
    # real face is not exactly a similarity of the template; a wrong frame (the unscaled 112 template,
    # swapped axes, a missing inverse) puts the eyes 8 px and more off on every face.
    assert np.median(errors) < 4.0, errors
    assert errors.mean() < 5.0, errors
    assert errors.max() < 12.0, errors


def test_jpg_output_and_worker_processes(lfw_subset: LfwSubset, mixed_folder: Path, aligned, tmp_path: Path):
    """The stage's default worker process decodes the same files; image_format switches to JPEG."""
    subset = tmp_path / "images"
    for identity in lfw_subset.multi[:2] + ["Not_An_Image"]:
        for src in (mixed_folder / identity).iterdir():
            (subset / identity).mkdir(parents=True, exist_ok=True)
            (subset / identity / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "aligned_jpg"
    figures = align_directory(subset, out, AlignConfig(device="cpu", workers=1, batch_size=2, image_format="jpg"))
    assert (figures["images"], figures["aligned"], figures["unreadable"]) == (3, 2, 1)
    rows = read_index(out / "index.csv")
    assert all(r["image"].endswith(".jpg") for r in rows)
    for row in rows:
        with Image.open(out / row["image"]) as img:
            assert img.format == "JPEG" and img.size == (128, 128)
    reference = {r["source"]: r for r in read_index(aligned[0] / "index.csv")}
    for row in rows:  # same detections whatever the batching
        ref = reference[row["source"]]
        for key in INDEX_COLUMNS[5:]:
            assert float(row[key]) == pytest.approx(float(ref[key]), abs=0.05), key


def test_empty_folder_is_an_error(tmp_path: Path):
    (tmp_path / "images" / "Nobody").mkdir(parents=True)
    (tmp_path / "images" / "Nobody" / "notes.txt").write_text("no images")
    with pytest.raises(InputError, match="no images under"):
        align_directory(tmp_path / "images", tmp_path / "aligned", AlignConfig(device="cpu", workers=0))
    assert not (tmp_path / "aligned").exists()


# ---------------------------------------------------------------- choosing the face LFW labels

def test_pick_central_prefers_the_centre_over_the_largest():
    boxes = np.array([[0.0, 0.0, 150.0, 150.0],       # large, off-centre
                      [110.0, 110.0, 140.0, 140.0],   # small, centred in 250x250
                      [200.0, 200.0, 240.0, 245.0]])
    probs = np.array([0.99, 0.95, 0.999])
    points = np.arange(30, dtype=float).reshape(3, 5, 2)
    detection = pick_central(boxes, probs, points, (250, 250))
    np.testing.assert_array_equal(detection.box, boxes[1])
    np.testing.assert_array_equal(detection.landmarks, points[1])
    assert detection.prob == pytest.approx(0.95)
    assert detection.faces == 3


def test_pick_central_uses_width_and_height():
    boxes = np.array([[10.0, 90.0, 30.0, 110.0], [170.0, 10.0, 190.0, 30.0]])
    points = np.zeros((2, 5, 2))
    # a 400 wide, 200 high image: the centre is (200, 100)
    assert pick_central(boxes, np.ones(2), points, (400, 200)).box[0] == 170.0
    assert pick_central(boxes, np.ones(2), points, (40, 200)).box[0] == 10.0


def test_central_face_is_chosen_in_a_real_two_face_image(lfw_subset: LfwSubset, aligner):
    big = open_jpeg(lfw_subset.image_bytes(lfw_subset.single[2])).resize((300, 300))
    small = open_jpeg(lfw_subset.image_bytes(lfw_subset.single[4])).crop((50, 50, 200, 200))
    canvas = Image.new("RGB", (480, 480), (128, 128, 128))
    canvas.paste(big, (0, 0))            # a large face up and to the left
    canvas.paste(small, (225, 225))      # a smaller face nearer the centre
    detection = aligner.detect([canvas])[0]
    assert detection is not None and detection.faces >= 2
    centre = np.array([(detection.box[0] + detection.box[2]) / 2, (detection.box[1] + detection.box[3]) / 2])
    assert np.linalg.norm(centre - [300, 300]) < 25, detection.box
    boxes, _ = aligner.mtcnn.detect(np.asarray(canvas)[None])
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes[0]]
    chosen = (detection.box[2] - detection.box[0]) * (detection.box[3] - detection.box[1])
    assert chosen < max(areas)  # not the largest face


# ---------------------------------------------------------------- decoding

def test_load_rgb_converts_modes(tmp_path: Path):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    rgb.convert("L").save(tmp_path / "l.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgb.convert("P").save(tmp_path / "p.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)
    rgba.save(tmp_path / "rgba.png")
    for name, mode in [("l.png", "L"), ("cmyk.jpg", "CMYK"), ("p.png", "P"), ("rgba.png", "RGBA")]:
        img, original = load_rgb(tmp_path / name)
        assert (img.mode, img.size, original) == ("RGB", (60, 40), mode)
    fully_transparent, _ = load_rgb(tmp_path / "rgba.png")
    assert (np.asarray(fully_transparent) == 255).all()  # composited on white, not on black garbage


def test_load_rgb_applies_exif_orientation(tmp_path: Path):
    img = Image.new("RGB", (60, 40), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rotated.jpg", exif=exif)
    loaded, _ = load_rgb(tmp_path / "rotated.jpg")
    assert loaded.size == (40, 60)


def test_load_rgb_refuses_truncated_and_non_images(tmp_path: Path, lfw_subset: LfwSubset):
    jpeg = lfw_subset.image_bytes(lfw_subset.multi[0])
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(OSError):
        load_rgb(tmp_path / "cut.jpg")
    with pytest.raises(OSError):
        load_rgb(tmp_path / "text.jpg")


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped(tmp_path: Path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # PIL writes a 16-bit grey PNG
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    img, _ = load_rgb(tmp_path / "deep.png")
    row = np.asarray(img)[0, :, 0].astype(int)
    assert img.mode == "RGB" and row[0] == 0 and row[-1] == 255
    assert abs(row[32] - 130) <= 2 and (np.diff(row) >= 0).all()  # a ramp, not white from 1/257 on


def test_a_name_that_is_not_utf8_is_listed_as_a_failure_and_the_rest_aligned(lfw_subset: LfwSubset, tmp_path: Path):
    root = tmp_path / "images"
    person = lfw_subset.multi[0]
    good = root / person / f"{person}_0001.jpg"
    good.parent.mkdir(parents=True)
    good.write_bytes(lfw_subset.image_bytes(person))
    odd = root / os.fsdecode(b"Jos\xe9_Latin1") / "Jos_0001.jpg"  # a Latin-1 name from an old archive
    odd.parent.mkdir()
    odd.write_bytes(lfw_subset.image_bytes(person, 1))
    figures = align_directory(root, tmp_path / "out", AlignConfig(device="cpu", workers=0, batch_size=4))
    assert figures["images"] == 2 and figures["aligned"] == 1 and figures["failed"] == 1
    (failure,) = read_csv(tmp_path / "out" / "failures.csv")
    assert failure["source"] == "Jos\\xe9_Latin1/Jos_0001.jpg" and failure["identity"] == "Jos\\xe9_Latin1"
    assert "not valid UTF-8" in failure["reason"]
    assert [r["identity"] for r in read_csv(tmp_path / "out" / "index.csv")] == [person]


def test_an_output_folder_overlapping_the_images_is_refused_and_nothing_is_touched(lfw_subset: LfwSubset,
                                                                                    tmp_path: Path):
    root = tmp_path / "images"
    person = lfw_subset.multi[0]
    (root / person).mkdir(parents=True)
    (root / person / f"{person}_0001.jpg").write_bytes(lfw_subset.image_bytes(person))
    for out in (root, root / "aligned", tmp_path):
        with pytest.raises(InputError, match="overlap; give an output folder outside the images"):
            align_directory(root, out, AlignConfig(device="cpu", workers=0))
    assert [p.name for p in root.rglob("*")] == [person, f"{person}_0001.jpg"]
