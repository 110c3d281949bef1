"""The hard-case review folder without a server: the export ledger, duplicates, and what ingest skips or refuses."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlops_assets.cli import main
from mlops_assets.lib.monitoring.capture import HARD_CASES
from mlops_assets.lib.monitoring.hard_cases import LEDGER, HardCaseError, export_hard_cases, ingest_reviewed
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def _case(seed: int, request: int, label: str = "3", index: int = 0) -> dict:
    return {
        "request_id": f"{request:032x}",
        "index": index,
        "label": label,
        "confidence": 0.3,
        "image": base64.b64encode(_png(seed)).decode(),
    }


def _store(tmp_path: Path, cases: list[dict], name: str = "2026-11-03.1.jsonl") -> FolderPredictionStore:
    folder = tmp_path / "predictions" / HARD_CASES
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(case) + "\n" for case in cases))
    return FolderPredictionStore(tmp_path / "predictions")


def test_export_again_adds_only_new_cases_never_one_the_reviewer_deleted(tmp_path: Path) -> None:
    review = tmp_path / "review"
    store = _store(tmp_path, [_case(1, 1), _case(2, 2, label="5")])
    first = export_hard_cases(store, review, test_share=0.0)
    assert (first.written, first.already_there, first.duplicates) == ({"3": 1, "5": 1}, 0, 0)
    # The reviewer deletes one case and refiles the other under its true label.
    (review / "3" / f"hardcase-{1:032x}-0.png").unlink()
    (review / "7").mkdir()
    (review / "5" / f"hardcase-{2:032x}-0.png").rename(review / "7" / f"hardcase-{2:032x}-0.png")
    _store(tmp_path, [_case(3, 3)])

    again = export_hard_cases(store, review, test_share=0.0)

    assert (again.written, again.already_there, again.duplicates) == ({"3": 1}, 2, 0)
    assert sorted(str(path.relative_to(review)) for path in review.glob("*/*")) == [
        f"3/hardcase-{3:032x}-0.png",
        f"7/hardcase-{2:032x}-0.png",
    ]
    assert len((review / LEDGER).read_text().splitlines()) == 3


def test_identical_inputs_are_exported_once(tmp_path: Path) -> None:
    review = tmp_path / "review"
    # The same image in two requests, and twice in one request.
    store = _store(tmp_path, [_case(1, 1), _case(1, 2, label="5"), _case(1, 3, index=0), _case(1, 3, index=1)])
    result = export_hard_cases(store, review, test_share=0.0)
    assert (result.written, result.already_there, result.duplicates) == ({"3": 1}, 0, 3)
    assert [path.name for path in review.glob("*/*")] == [f"hardcase-{1:032x}-0.png"]
    # Exported again: the one file counts once as exported before, its three repeats as duplicates.
    again = export_hard_cases(store, review, test_share=0.0)
    assert (again.written, again.already_there, again.duplicates) == ({}, 1, 3)


def test_a_record_with_a_bad_index_or_request_id_is_named_not_exported(tmp_path: Path) -> None:
    bad_index = {**_case(1, 1), "index": "abc"}
    bad_request = {**_case(2, 2), "request_id": "../../etc"}
    result = export_hard_cases(_store(tmp_path, [bad_index, bad_request]), tmp_path / "review", 0.0)
    assert result.written == {}
    assert result.unusable == [
        "2026-11-03.1.jsonl record 1: ValueError: index = 'abc' is not an integer >= 0",
        "2026-11-03.1.jsonl record 2: ValueError: request_id = '../../etc' is not a request id",
    ]


def _dataset(tmp_path: Path) -> Path:
    dataset = tmp_path / "dataset"
    for label in ("3", "5"):
        (dataset / label).mkdir(parents=True)
        (dataset / label / "a.png").write_bytes(_png(int(label) + 100))
    return dataset


def test_ingest_names_what_it_skips(tmp_path: Path) -> None:
    review = tmp_path / "review"
    export_hard_cases(_store(tmp_path, [_case(1, 1)]), review, test_share=0.0)
    (review / "stray.png").write_bytes(_png(9))
    (review / "5" / "deeper").mkdir(parents=True)
    (review / "5" / "deeper" / f"hardcase-{4:032x}-0.png").write_bytes(_png(4))
    (review / "5" / "photo.png").write_bytes(_png(5))

    result = ingest_reviewed(review, _dataset(tmp_path))

    assert (result.copied, result.already_there) == ({"3": 1}, 0)
    assert result.skipped == [
        "5/deeper/hardcase-00000000000000000000000000000004-0.png: nested below a label's folder (files go directly "
        "in review/<label>/)",
        "5/photo.png: not an exported hard case (its name does not start with hardcase-)",
        "stray.png: not in a label's folder",
    ]


def test_ingest_refuses_a_file_that_is_not_an_image_and_copies_nothing(tmp_path: Path) -> None:
    review = tmp_path / "review"
    export_hard_cases(_store(tmp_path, [_case(1, 1)]), review, test_share=0.0)
    (review / "5").mkdir()
    (review / "5" / "hardcase-notes.png").write_text("the reviewer's notes")
    dataset = _dataset(tmp_path)

    with pytest.raises(HardCaseError) as caught:
        ingest_reviewed(review, dataset)

    assert str(caught.value) == (
        f"1 reviewed file(s) in {review} are not usable images, nothing copied: 5/hardcase-notes.png: cannot be "
        "decoded: The bytes are not a recognised image; send an image file (PNG, JPEG, WebP, BMP, TIFF or GIF). "
        "Delete them (or replace them with the exported images) and ingest again."
    )
    assert sorted(path.name for path in dataset.glob("*/*")) == ["a.png", "a.png"]


def test_ingest_without_a_catalogue_dataset_says_to_add_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    (tmp_path / "review").mkdir()
    assert main(["hardcases", "ingest", str(tmp_path / "review")]) == 2
    assert capsys.readouterr().err == (
        "error: command line: --dataset: no current catalogue dataset in this environment; hard cases join a "
        "dataset folder of the catalogue: run `mlops datasets add NAME FOLDER` first (then `mlops run --dataset "
        "NAME` makes it current), or name one with --dataset\n"
    )


def test_a_second_export_counts_the_files_exported_before_not_their_repeated_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    # Two distinct images, each kept for three requests: six records, two files.
    _store(home, [_case(seed, 10 * seed + request) for request in range(1, 4) for seed in (1, 2)])
    review = tmp_path / "review"
    assert main(["hardcases", "export", "--out", str(review)]) == 0
    capsys.readouterr()
    assert main(["hardcases", "export", "--out", str(review)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"Exported 0 hard case(s) to {review} by predicted label (none); 2 exported before; 4 duplicate(s) of another "
        "case's image skipped; 0 marked for the test split (share 0.5)."
    )
    assert len(list(review.glob("*/*"))) == 2
