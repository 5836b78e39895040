"""The Kubernetes side: pure manifests, observations and reconcile decisions, and the thin
adapters (API client, Prometheus reader, metrics exporter, kopf handlers) around them."""
