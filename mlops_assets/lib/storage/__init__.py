"""Object storage shared by the pipeline and the service: GCS locations, clients and whole-directory transfers."""
