"""The built-in trainer: PyTorch tasks behind one interface, honouring the trainer contract."""
