"""scalingstudy: measure how deep-learning models scale, on Kubernetes or on one machine."""

__version__ = "0.1.0"
