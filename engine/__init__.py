"""The job engine: the pure state machine (fold, decisions) and the I/O shell around it."""
