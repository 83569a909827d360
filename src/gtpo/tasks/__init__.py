"""The tasks: datasets, the prompt, the synthetic arithmetic task, the paper's rewards and their verifier."""
