"""The datasets users actually have, through the real pipeline (ingest, validation, checks, 3 epochs of training):
rotated photos, other formats, operating-system side files, empty classes, camera-sized photos, hidden folders,
damaged metadata, and datasets whose every file is refused."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.metadata import resolve_home_path
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import CLASS_COVERAGE_CHECK, QUARANTINE_CHECK, validated_images_quality
from mlops_assets.lib.data.validated_data import ValidatedDataset, load_validated_dataset
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets_tests import image_inputs as inputs
from mlops_assets_tests.dataset_resources import dataset_store_under, registry_under

SHORT_TRAINING = {"ops": {"trained_model": {"config": {"epochs": 3, "learning_rate": 0.003}}}}
PIPELINE = [raw_images, validated_images, validated_images_quality, trained_model]


def _run(dataset: Path, artifacts: Path, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        PIPELINE,
        resources={
            "dataset": FolderDatasetSource(root=str(dataset)),
            "artifacts": LocalArtifactStore(root=str(artifacts)),
            "dataset_store": dataset_store_under(artifacts),
            "registry": registry_under(artifacts),
        },
        run_config=SHORT_TRAINING,
        instance=instance,
        raise_on_error=False,
    )


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {key: getattr(value, "value", value) for key, value in event.materialization.metadata.items()}


def _validated(result: dg.ExecuteInProcessResult) -> ValidatedDataset:
    return load_validated_dataset(resolve_home_path(_metadata(result, "validated_images")["storage_path"]))


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str]]:
    return {e.check_name: (e.passed, e.description) for e in result.get_asset_check_evaluations()}


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def _trained_cleanly(result: dg.ExecuteInProcessResult) -> None:
    assert result.success
    assert all(passed for passed, _ in _checks(result).values()), _checks(result)
    assert "trained_model" in _materialized(result)


def _sideways_photos(root: Path) -> Path:
    """30 JPEGs per label stored 64 wide x 48 high, tagged to be shown rotated (portrait, 48 wide x 64 high)."""
    for label, base in (("dark", 60), ("bright", 190)):
        for index in range(30):
            pixels = inputs.noise(index * 3 + base, (48, 64, 3), base=base, spread=40)
            inputs.write(root / label / f"IMG_{index:04d}.jpg", inputs.sideways_jpeg(pixels))
    return root


def test_rotated_photos_give_the_displayed_geometry_fresh_or_incremental(tmp_path: Path) -> None:
    dataset = _sideways_photos(tmp_path / "data")
    instance = dg.DagsterInstance.ephemeral()
    first = _run(dataset, tmp_path / "artifacts", instance)
    _trained_cleanly(first)
    assert _metadata(first, "validated_images")["input_shape"] == "3x64x48 (channels x height x width)"

    extra = inputs.noise(999, (48, 64, 3), base=60, spread=40)
    inputs.write(dataset / "dark" / "extra_IMG_0999.jpg", inputs.sideways_jpeg(extra))
    incremental = _run(dataset, tmp_path / "artifacts", instance)
    _trained_cleanly(incremental)
    assert _metadata(incremental, "validated_images")["input_shape"] == "3x64x48 (channels x height x width)"
    assert _metadata(incremental, "validated_images")["num_decoded_now"] == 1

    fresh = _run(dataset, tmp_path / "fresh-artifacts", dg.DagsterInstance.ephemeral())
    assert _metadata(fresh, "validated_images")["num_decoded_now"] == 61
    one, other = _validated(incremental), _validated(fresh)
    assert one.spec == other.spec
    for name in ("images.npy", "labels.npy", "splits.npy"):
        np.testing.assert_array_equal(np.load(Path(one.directory) / name), np.load(Path(other.directory) / name))
    assert one.statistics()[["path", "width", "height"]].equals(other.statistics()[["path", "width", "height"]])
    assert set(one.statistics()["width"]) == {48} and set(one.statistics()["height"]) == {64}


def test_every_format_pillow_decodes_is_trained_on_and_none_is_quarantined(tmp_path: Path) -> None:
    dataset = inputs.two_label_dataset(tmp_path / "data")
    for label, base in (("dark", 60), ("bright", 190)):
        pixels = inputs.noise(base + 1000, (32, 32, 3), base=base, spread=40)
        image = Image.fromarray(pixels)
        inputs.write(dataset / label / f"{label}_extra.webp", inputs.encode(image, "WEBP"))
        inputs.write(dataset / label / f"{label}_extra.bmp", inputs.encode(image, "BMP"))
        inputs.write(dataset / label / f"{label}_extra.tiff", inputs.encode(image, "TIFF"))
        frames = [inputs.noise(base + seed, (32, 32), base=base, spread=40) for seed in (1, 2, 3)]
        inputs.write(dataset / label / f"{label}_extra.gif", inputs.animated_gif(frames))
        inputs.write(dataset / label / f"{label}_mpo.jpg", inputs.mpo([pixels, pixels[::-1]]))
    result = _run(dataset, tmp_path / "artifacts")
    _trained_cleanly(result)
    validated = _validated(result)
    assert validated.quarantine().empty
    assert sum(validated.split_counts.values()) == 70
    formats = validated.statistics().set_index("path")["format"]
    assert {formats[f"dark/dark_extra.{suffix}"] for suffix in ("webp", "bmp", "tiff", "gif")} == {
        "WEBP",
        "BMP",
        "TIFF",
        "GIF",
    }
    assert formats["bright/bright_mpo.jpg"] == "JPEG"
    assert _checks(result)[QUARANTINE_CHECK] == (
        True,
        "0 of 70 files quarantined (0.0%); the profile allows at most 5.0%",
    )


SIDE_FILES = {
    "Thumbs.db": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "operating-system side file"),
    "desktop.ini": (b"[.ShellClassInfo]\r\nIconResource=imageres.dll,-3\r\n", "operating-system side file"),
    ".DS_Store": (b"\x00\x00\x00\x01Bud1", "operating-system side file"),
    "._IMG_1.jpg": (b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X", "macOS AppleDouble side file"),
    "IMG_1.xmp": (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>", "sidecar metadata (.xmp)"),
    "IMG_1.aae": (b"<?xml version='1.0'?><plist/>", "sidecar metadata (.aae)"),
    "IMG_1.json": (b'{"title": "IMG_1.jpg"}', "sidecar metadata (.json)"),
    "notes.txt": (b"shot on a cloudy day", "notes or document (.txt)"),
}


def test_operating_system_and_editor_side_files_are_listed_never_counted(tmp_path: Path) -> None:
    dataset = inputs.two_label_dataset(tmp_path / "data")
    for label in ("dark", "bright"):
        for name in ("Thumbs.db", "desktop.ini"):
            inputs.write(dataset / label / name, SIDE_FILES[name][0])
    for name in ("._IMG_1.jpg", "IMG_1.xmp", "IMG_1.aae", "IMG_1.json", "notes.txt", ".DS_Store"):
        inputs.write(dataset / "bright" / name, SIDE_FILES[name][0])
    result = _run(dataset, tmp_path / "artifacts")
    _trained_cleanly(result)
    ingest = _metadata(result, "raw_images")
    assert ingest["num_images"] == 60 and ingest["num_skipped"] == 10
    listed = {item["path"]: item for item in ingest["skipped_files"]}
    assert set(listed) == {
        f"{label}/{name}" for label in ("dark", "bright") for name in ("Thumbs.db", "desktop.ini")
    } | {f"bright/{name}" for name in ("._IMG_1.jpg", "IMG_1.xmp", "IMG_1.aae", "IMG_1.json", "notes.txt", ".DS_Store")}
    for path, item in listed.items():
        assert item["label"] == path.split("/")[0]
        assert item["reason"].startswith(SIDE_FILES[path.split("/")[1]][1]), item
    report = _validated(result).quarantine()
    assert set(report["status"]) == {"skipped"} and set(report["path"]) == set(listed)
    assert dict(zip(report["path"], report["label"], strict=True)) == {path: path.split("/")[0] for path in listed}
    assert _checks(result)[QUARANTINE_CHECK] == (
        True,
        "0 of 60 files quarantined (0.0%); the profile allows at most 5.0%; 10 other entries skipped as not images "
        "(listed in quarantine.csv, not counted)",
    )


@pytest.mark.parametrize(
    ("contents", "usable"),
    [({}, 0), ({"Thumbs.db": b"\xd0\xcf\x11\xe0"}, 0), ({f"{i}.png": b"not an image" for i in range(2)}, 0)],
    ids=["empty", "side-files-only", "all-refused"],
)
def test_a_label_folder_without_usable_images_blocks_like_a_too_small_class(
    tmp_path: Path, contents: dict[str, bytes], usable: int
) -> None:
    dataset = inputs.two_label_dataset(tmp_path / "data")
    (dataset / "cat").mkdir()
    for name, data in contents.items():
        inputs.write(dataset / "cat" / name, data)
    result = _run(dataset, tmp_path / "artifacts")
    assert not result.success
    assert _checks(result)[CLASS_COVERAGE_CHECK] == (
        False,
        f"Failed: class 'cat' has {usable} usable image(s), below min_images_per_class 5",
    )
    assert "trained_model" not in _materialized(result)


def test_camera_photos_train_at_a_fraction_of_their_size(tmp_path: Path) -> None:
    """Only 24-megapixel JPEGs (6000x4000): accepted, decoded small, and trained on."""
    for label, base in (("dark", 70), ("bright", 180)):
        for index in range(6):
            inputs.write(tmp_path / "data" / label / f"DSC{index:04d}.jpg", inputs.large_photo(index + base, base))
    result = _run(tmp_path / "data", tmp_path / "artifacts")
    _trained_cleanly(result)
    assert _metadata(result, "validated_images")["input_shape"] == "3x43x64 (channels x height x width)"
    stats = _validated(result).statistics()
    assert (stats["quarantine_reason"] == "").all()
    assert set(zip(stats["width"], stats["height"], stats["format"], strict=True)) == {(6000, 4000, "JPEG")}


def test_hidden_folders_of_images_are_listed_as_skipped_not_labels(tmp_path: Path) -> None:
    dataset = inputs.two_label_dataset(tmp_path / "data")
    png = inputs.encode(Image.fromarray(inputs.noise(5, (32, 32, 3))), "PNG")
    for folder in (".hidden", "...", "dark/.thumbnails"):
        for index in range(3):
            inputs.write(dataset / folder / f"{index}.png", png)
    result = _run(dataset, tmp_path / "artifacts")
    _trained_cleanly(result)
    assert _validated(result).labels == ("bright", "dark")
    listed = {item["path"]: item["reason"] for item in _metadata(result, "raw_images")["skipped_files"]}
    assert set(listed) == {".hidden/", ".../", "dark/.thumbnails/"}
    assert listed[".../"].startswith("hidden folder (its name starts with '.'), not read")
    assert listed[".hidden/"].endswith("; not a label (3 file(s) in it are not used)")
    assert listed["dark/.thumbnails/"].endswith("(3 file(s) in it are not used)")


def test_damaged_exif_in_a_photo_is_a_quarantine_entry_not_a_failed_asset(tmp_path: Path) -> None:
    dataset = inputs.two_label_dataset(tmp_path / "data")
    pixels = inputs.noise(7, (32, 32, 3), base=60, spread=40)
    inputs.write(dataset / "dark" / "IMG_7.jpg", inputs.jpeg_with_exif_block(pixels, inputs.truncated_exif_block()))
    result = _run(dataset, tmp_path / "artifacts")
    _trained_cleanly(result)
    assert _validated(result).quarantine().to_dict("records") == [
        {
            "path": "dark/IMG_7.jpg",
            "label": "dark",
            "reason": "cannot be decoded: its EXIF metadata block is damaged (its directory claims 5 entries but "
            "the block ends first); re-save the image without it",
            "status": "quarantined",
        }
    ]


def _step_failure(result: dg.ExecuteInProcessResult) -> tuple[str, str, str]:
    (event,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = event.event_specific_data.error
    cause = error.cause or error
    return event.step_key, cause.cls_name, cause.message


def test_a_dataset_whose_every_file_is_refused_fails_with_examples(tmp_path: Path) -> None:
    for label in ("bright", "dark"):
        inputs.write(tmp_path / "data" / label / "0.png", b"a text file named like an image")
        inputs.write(tmp_path / "data" / label / "1.ico", inputs.encode(Image.new("RGB", (16, 16)), "ICO"))
    result = _run(tmp_path / "data", tmp_path / "artifacts")
    assert not result.success
    step, error_class, message = _step_failure(result)
    root = (tmp_path / "data").resolve()
    assert (step, error_class) == ("validated_images", "DatasetError")
    assert message.strip() == (
        f"mlops_assets.lib.errors.DatasetError: None of the 4 image files under {root} is accepted by the image "
        "policy of profile 'default'; convert or replace those files, or widen the profile's image_policy settings. "
        "Examples: bright/0.png: cannot be decoded: The bytes are not a recognised image; send an image file (PNG, "
        "JPEG, WebP, BMP, TIFF or GIF).; bright/1.ico: image format ICO is not in the profile's allowed_formats "
        "['PNG', 'JPEG', 'WEBP', 'BMP', 'TIFF', 'GIF']; dark/0.png: cannot be decoded: The bytes are not a "
        "recognised image; send an image file (PNG, JPEG, WebP, BMP, TIFF or GIF)."
    )


def test_a_dataset_of_side_files_only_fails_at_ingest_with_examples(tmp_path: Path) -> None:
    for label in ("bright", "dark"):
        inputs.write(tmp_path / "data" / label / "Thumbs.db", SIDE_FILES["Thumbs.db"][0])
    result = _run(tmp_path / "data", tmp_path / "artifacts")
    step, error_class, message = _step_failure(result)
    assert (step, error_class) == ("raw_images", "DatasetError")
    assert "No images found under" in message
    assert "bright/Thumbs.db: operating-system side file (Windows thumbnail cache): not an image" in message


def test_the_quarantine_report_names_the_label_of_every_refused_file(tmp_path: Path) -> None:
    dataset = inputs.two_label_dataset(tmp_path / "data")
    inputs.write(dataset / "bright" / "scan.ico", inputs.encode(Image.new("RGB", (16, 16)), "ICO"))
    inputs.write(dataset / "stray.png", inputs.encode(Image.new("RGB", (16, 16)), "PNG"))
    result = _run(dataset, tmp_path / "artifacts")
    _trained_cleanly(result)
    report = _validated(result).quarantine()
    assert report.to_dict("records") == [
        {
            "path": "bright/scan.ico",
            "label": "bright",
            "reason": "image format ICO is not in the profile's allowed_formats ['PNG', 'JPEG', 'WEBP', 'BMP', "
            "'TIFF', 'GIF']",
            "status": "quarantined",
        },
        {
            "path": "stray.png",
            "label": "",
            "reason": "file directly under the dataset root has no label folder",
            "status": "skipped",
        },
    ]
