"""The conversation engine: pure AutoGen 0.2 semantics as a resumable state machine, and its ports."""
