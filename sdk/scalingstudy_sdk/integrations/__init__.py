"""Callbacks for training libraries (optional: each imports its library)."""
