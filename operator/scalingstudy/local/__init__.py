"""The local executor: trials as processes on this machine, results on disk."""
