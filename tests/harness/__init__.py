"""Test harness: a real Kubernetes control plane, Prometheus and a node agent on loopback."""
