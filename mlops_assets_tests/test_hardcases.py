"""The hard-case loop: the service keeps low-confidence inputs with their prediction, `mlops hardcases export`
writes them for review in the dataset layout, and reviewed cases join the dataset, a configured share in test."""

from __future__ import annotations

import hashlib
import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.splits import assign_split, hard_case_in_test
from mlops_assets.lib.monitoring.capture import HARD_CASES
from mlops_assets.lib.monitoring.hard_cases import HardCaseError, export_hard_cases, ingest_reviewed
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore, records, substore
from mlops_assets_tests.service_fixtures import ServedBento

HARD_CASE_CONFIDENCE = 0.5  # the default monitoring.capture.hard_cases.confidence the shared bento is built with


def _noise_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_share_of_hard_cases_in_the_test_split_is_the_configured_one_and_fixed_by_content() -> None:
    hashes = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(4000)]
    in_test = [h for h in hashes if hard_case_in_test(h, 0.3)]
    assert abs(len(in_test) / len(hashes) - 0.3) < 0.03
    assert [hard_case_in_test(h, 0.3) for h in hashes] == [hard_case_in_test(h, 0.3) for h in hashes]
    assert {assign_split(h, "hardcase-test-x-0.png") for h in hashes[:50]} == {"test"}
    assert {assign_split(h, "hardcase-x-0.png") for h in hashes} == {"train", "val"}
    assert {assign_split(h, "x.png") for h in hashes} == {"train", "val", "test"}


def test_hard_cases_are_kept_exported_labelled_and_ingested_into_the_test_split(
    served_bento: ServedBento, digits_subset: Path, tmp_path: Path
) -> None:
    images = [_noise_png(seed) for seed in range(48)]
    answers = []
    with served_bento.client() as client:
        for start in range(0, len(images), 16):
            batch = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images[start : start + 16])]
            response = client.post("/predict", files=batch)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    expected = {
        (answer["request_id"], index)
        for answer in answers
        for index, prediction in enumerate(answer["predictions"])
        if prediction["confidence"] <= HARD_CASE_CONFIDENCE
    }
    assert expected, "no noise image was answered with low confidence; the test needs at least one"
    store = FolderPredictionStore(served_bento.home / "predictions")
    mine = {answer["request_id"] for answer in answers}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kept = [r for r in records(substore(store, HARD_CASES)) if r["request_id"] in mine]
        if len(kept) >= len(expected):
            break
        time.sleep(0.2)
    # Exactly the low-confidence answers, each with its prediction and its input.
    assert {(r["request_id"], r["index"]) for r in kept} == expected
    by_answer = {(a["request_id"], i): p for a in answers for i, p in enumerate(a["predictions"])}
    for record in kept:
        assert record["label"] == by_answer[(record["request_id"], record["index"])]["label"]
        assert record["model_version"] == served_bento.model_tag

    review = tmp_path / "review"
    exported = export_hard_cases(store, review, test_share=0.5)
    files = sorted(review.glob("*/hardcase-*.png"))
    assert exported.unusable == []
    mine_files = [path for path in files if any(request in path.name for request in mine)]
    assert len(mine_files) == len(expected)
    for path in mine_files:  # filed under the predicted label, as a suggestion
        request_id, index = path.stem.removeprefix("hardcase-").removeprefix("test-").rsplit("-", 1)
        assert path.parent.name == by_answer[(request_id, int(index))]["label"]
    assert export_hard_cases(store, review, test_share=0.5).total == 0  # exported once

    # The reviewer: every case is really a "0"; other cases of the shared server are thrown away.
    for path in files:
        if path in mine_files and path.parent.name != "0":
            (review / "0").mkdir(exist_ok=True)
            path.rename(review / "0" / path.name)
        elif path not in mine_files:
            path.unlink()
    dataset = tmp_path / "dataset"
    shutil.copytree(digits_subset, dataset)
    before = scan_dataset(dataset)
    ingested = ingest_reviewed(review, dataset)
    assert (ingested.copied, ingested.already_there) == ({"0": len(expected)}, 0)

    after = scan_dataset(dataset)
    assert after.data_version != before.data_version
    cases = [entry for entry in after.entries if entry.path.split("/")[-1].startswith("hardcase-")]
    assert len(cases) == len(expected) and {entry.label for entry in cases} == {"0"}
    for entry in cases:
        sha_test = hard_case_in_test(entry.sha256, 0.5)
        assert entry.path.split("/")[-1].startswith("hardcase-test-") == sha_test
        assert (entry.split == "test") == sha_test
    assert ingest_reviewed(review, dataset).total == 0  # already there


def test_a_review_folder_that_is_not_a_label_of_the_dataset_is_refused_and_nothing_is_copied(
    tmp_path: Path, digits_subset: Path
) -> None:
    (tmp_path / "review" / "zero").mkdir(parents=True)
    (tmp_path / "review" / "zero" / "hardcase-abc-0.png").write_bytes(_noise_png(1))
    dataset = tmp_path / "dataset"
    shutil.copytree(digits_subset, dataset)
    with pytest.raises(HardCaseError) as refused:
        ingest_reviewed(tmp_path / "review", dataset)
    assert str(refused.value).startswith(
        f"Review folder(s) zero in {tmp_path / 'review'} are not labels of the dataset {dataset} (labels: 0, 1, 2"
    )
    assert not list(dataset.glob("*/hardcase-*"))
