"""The one sensor that acts on the assets' automation conditions, on from the moment the UI's daemon runs."""

import dagster as dg

# Dagster adds a sensor like this one, but stopped ("Auto-materialize off"); declared here, it starts running.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps every asset up to date by its automation condition: an asset whose input or code changed is "
    "rebuilt once its inputs are settled (training only after the blocking data checks passed).",
)
