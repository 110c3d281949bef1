"""MLOps pipeline: a Dagster code location (``definitions``) and the ML library it drives (``lib``)."""
