"""The application: the `gtpo` command, recipes, the training pipeline, evaluation and run reports."""
