"""How the asset graph reads in the Dagster UI: its groups, owners and tags, defined once for every stage."""

from __future__ import annotations

# One group per part of the life cycle a person looks for; the UI draws each as one box on the lineage graph.
DATA = "data"
MODEL = "model"
DEPLOYMENT = "deployment"
MONITORING = "monitoring"

# Dagster owners are e-mail addresses or `team:<name>`; the UI filters the graph by them.
OWNERS = {
    DATA: ["team:data"],
    MODEL: ["team:ml"],
    DEPLOYMENT: ["team:mlops"],
    MONITORING: ["team:mlops"],
}

# Tags every asset of the model project carries (`tag:project=mlops-assets` selects them all in the UI).
PROJECT_TAGS = {"project": "mlops-assets", "model": "image-classifier"}


def presentation(group: str) -> dict[str, object]:
    """The keyword arguments that place an asset in `group`: its group name, owners and the project's tags."""
    return {"group_name": group, "owners": OWNERS[group], "tags": {**PROJECT_TAGS, "stage": group}}
