"""The champion/challenger gate's rules, on metrics shaped like classification_report's."""

import pytest

from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.models.evaluation import ChampionEvaluation
from mlops_assets.lib.registry.gate import decide_gate
from mlops_assets.lib.registry.policy import PromotionPolicy, load_policy

POLICY = PromotionPolicy(floor=0.8, tolerance=0.01, per_class_margin=0.05)


def metrics(accuracy: float, f1: dict[str, float] | None = None) -> dict:
    f1 = f1 or {"cat": accuracy, "dog": accuracy}
    per_class = [{"label": label, "precision": v, "recall": v, "f1": v, "support": 10} for label, v in f1.items()]
    return {"accuracy": accuracy, "macro_f1": sum(f1.values()) / len(f1), "num_examples": 20, "per_class": per_class}


def champion(accuracy: float, f1: dict[str, float] | None = None) -> ChampionEvaluation:
    return ChampionEvaluation(4, "image-classifier:abc", "0" * 64, True, metrics(accuracy, f1), "evaluated now")


def test_first_model_is_decided_by_the_floor_alone_and_says_so() -> None:
    passed = decide_gate(metrics(0.85), None, POLICY)
    assert passed.passed and "first model" in passed.reason and "floor alone" in passed.reason
    failed = decide_gate(metrics(0.75), None, POLICY)
    assert not failed.passed and "below the floor 0.8000" in failed.reason


def test_better_candidate_passes() -> None:
    decision = decide_gate(metrics(0.95), champion(0.90), POLICY)
    assert decision.passed and "better" in decision.reason
    assert decision.details["difference"] == pytest.approx(0.05)
    assert decision.details["champion_version"] == 4


def test_equal_within_tolerance_passes() -> None:
    decision = decide_gate(metrics(0.895), champion(0.90), POLICY)
    assert decision.passed and "within the tolerance" in decision.reason


def test_worse_candidate_fails_with_the_numbers_in_the_reason() -> None:
    decision = decide_gate(metrics(0.85), champion(0.90), POLICY)
    assert not decision.passed
    assert "accuracy 0.8500 vs production version 4 0.9000 (-0.0500)" in decision.reason
    assert "tolerance 0.0100" in decision.reason


def test_a_regressed_class_fails_even_when_the_average_is_better() -> None:
    decision = decide_gate(metrics(0.95, {"cat": 1.0, "dog": 0.80}), champion(0.90, {"cat": 0.88, "dog": 0.92}), POLICY)
    assert not decision.passed and "'dog' F1 0.9200 -> 0.8000" in decision.reason


def test_the_floor_applies_even_against_a_weaker_champion() -> None:
    decision = decide_gate(metrics(0.70), champion(0.60), POLICY)
    assert not decision.passed
    assert "accuracy 0.7000 is below the floor 0.8000" in decision.reason


def test_a_champion_with_other_labels_is_not_comparable_and_needs_a_deliberate_promotion() -> None:
    other = ChampionEvaluation(4, "image-classifier:abc", "0" * 64, False, None, "labels differ")
    decision = decide_gate(metrics(0.95), other, POLICY)
    assert not decision.passed and "labels differ" in decision.reason and "force" in decision.reason


def test_policy_file_rejects_unknown_keys_and_bad_values(tmp_path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("promotion: {floor: 0.9, staging_to_production: automatic}\n")
    assert load_policy(path) == PromotionPolicy(floor=0.9, staging_to_production="automatic")
    known = "primary_metric, floor, tolerance, per_class_margin, staging_to_production"
    for written, problem in [
        ("{flor: 0.9}", f"promotion.flor = 0.9: unknown setting (known: {known})"),
        ("{tolerance: 5}", "promotion.tolerance = 5: expected a number from 0 to 1"),
        ("{floor: high}", "promotion.floor = 'high': expected a number from 0 to 1"),
        ("{floor: '0.9'}", "promotion.floor = '0.9': expected a number from 0 to 1"),
        ("{primary_metric: f1}", "promotion.primary_metric = 'f1': expected one of 'accuracy', 'macro_f1'"),
    ]:
        path.write_text(f"promotion: {written}\n")
        with pytest.raises(MLOpsError) as refused:
            load_policy(path)
        assert str(refused.value) == f"{path}: {problem}"
