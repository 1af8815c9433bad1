"""Model weights: the manifest, bundled files and their resolution and verification."""
