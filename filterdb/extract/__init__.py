"""Extraction: a loaded model's conv graph -> its 3x3 filters, conv depth and BatchNorm fold
scales, one shard per model."""
