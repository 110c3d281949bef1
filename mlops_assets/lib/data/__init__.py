"""Data: manifests, the image policy, decoding, validation, splits and statistics."""
