"""Releases: the versioned folder, its manifest, dataset card, Croissant metadata, release
validation and ``filterdb pull``."""
