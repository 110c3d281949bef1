"""The BentoML service that serves models trained by the pipeline."""
