"""`mlops reproduce N` in a git checkout of the project: a version trained on a clean tree is rebuilt bit for bit; one
trained with uncommitted changes is reported as such."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets import settings

pytestmark = pytest.mark.e2e
# Two epochs of the default CNN: enough to give weights that depend on every input.
FAST = "ops:\n  trained_model:\n    config: {epochs: 2}\n"


class Checkout:
    """A copy of the project committed to a git repository of its own, driven through `mlops` from that copy."""

    def __init__(self, root: Path, dataset: Path) -> None:
        self.root, self.dataset, self.home = root / "project", dataset, root / "home"
        for name in ("mlops_assets", "bento", "deployments"):
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(settings.PROJECT_ROOT / name, self.root / name, ignore=ignore)
        for name in ("pyproject.toml", "workspace.yaml"):
            shutil.copy(settings.PROJECT_ROOT / name, self.root / name)
        # The gate is not what is tested: let every two-epoch model through.
        environment = self.root / "deployments" / "local.yaml"
        relaxed = environment.read_text()
        for old, new in (("floor: 0.80", "floor: 0.0"), ("tolerance: 0.01", "tolerance: 1.0")):
            relaxed = relaxed.replace(old, new)
        environment.write_text(relaxed.replace("per_class_margin: 0.05", "per_class_margin: 1.0"))
        (self.root / ".gitignore").write_text("__pycache__/\n")
        self.config = root / "fast.yaml"
        self.config.write_text(FAST)
        self.git("init", "--quiet")
        self.git("add", ".")
        self.git("commit", "--quiet", "-m", "the code that trains")
        self.commit = self.git("rev-parse", "HEAD").strip()

    def git(self, *args: str) -> str:
        command = ["git", "-C", str(self.root), "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def mlops(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "MLOPS_HOME": str(self.home), "PYTHONPATH": str(self.root)}
        for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV"):
            env.pop(key, None)
        command = [sys.executable, "-m", "mlops_assets.cli", *args]
        return subprocess.run(command, env=env, cwd=self.root, capture_output=True, text=True, timeout=1800)

    def train(self) -> str:
        completed = self.mlops("run", "--dataset", str(self.dataset), "--config", str(self.config))
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        return completed.stdout

    def weights(self, version: int) -> str:
        shown = self.mlops("models", "show", str(version)).stdout
        tag = re.search(r"^model tag\s+(\S+)$", shown, re.MULTILINE).group(1)
        packages = self.home / "artifacts" / "trained_model"
        found = [path for path in packages.glob("*/package.json") if tag.split(":")[1] in path.parent.name]
        assert len(found) == 1, (tag, list(packages.iterdir()))
        return re.search(r'"weights_sha256": "([0-9a-f]{64})"', found[0].read_text()).group(1)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory, digits_subset: Path) -> Checkout:
    root = tmp_path_factory.mktemp("reproduce")
    return Checkout(root, shutil.copytree(digits_subset, root / "digits"))


def _worktrees(checkout: Checkout) -> list[str]:
    return [line for line in checkout.git("worktree", "list").splitlines() if line.strip()]


def test_a_version_trained_on_a_clean_tree_is_rebuilt_bit_for_bit(checkout: Checkout) -> None:
    assert "registered as version 1" in checkout.train()
    weights = checkout.weights(1)
    reproduced = checkout.mlops("reproduce", "1")
    assert reproduced.returncode == 0, reproduced.stdout[-3000:] + reproduced.stderr[-3000:]
    lines = reproduced.stdout.splitlines()
    assert lines[0].startswith(f"Rebuilding version 1: commit {checkout.commit[:12]} (worktree ")
    assert lines[1:] == [
        f"version 1 reproduced: weights SHA-256 recorded {weights[:16]}, rebuilt {weights[:16]} (match)."
    ]
    # The temporary worktree and home are gone; this checkout's own state is untouched.
    temporary = Path(re.search(r"in the temporary home (\S+) \.\.\.", lines[0]).group(1)).parent
    assert not temporary.exists()
    assert len(_worktrees(checkout)) == 1
    assert checkout.git("status", "--porcelain", "--untracked-files=no") == ""


def test_a_dirty_tree_at_training_time_is_reported_as_such(checkout: Checkout) -> None:
    splits = checkout.root / "mlops_assets" / "lib" / "data" / "splits.py"
    source = splits.read_text()
    assert "TRAIN_FRACTION = 0.70" in source
    splits.write_text(source.replace("TRAIN_FRACTION = 0.70", "TRAIN_FRACTION = 0.65"))  # not committed
    trained = checkout.train()
    assert "registered as version 2" in trained
    shown = checkout.mlops("models", "show", "2").stdout
    assert re.search(r"^working tree\s+dirty$", shown, re.MULTILINE)

    reproduced = checkout.mlops("reproduce", "2")
    assert reproduced.returncode == 1, reproduced.stdout[-3000:] + reproduced.stderr[-3000:]
    # The commit without the change gives version 1's weights, not version 2's.
    recorded, rebuilt = checkout.weights(2), checkout.weights(1)
    assert reproduced.stdout.splitlines()[1:] == [
        f"version 2 was NOT reproduced: weights SHA-256 recorded {recorded[:16]}, rebuilt {rebuilt[:16]} (different).",
        "  What differs from the recorded training:",
        f"  - dirty tree at training time: tracked files differed from commit {checkout.commit[:12]} when version 2 "
        "was trained, so the code that trained it is in no commit; the rebuild used the commit",
    ]
    assert len(_worktrees(checkout)) == 1
