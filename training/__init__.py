"""Training package: data loaders, the training stages and the evaluation metrics (``python -m training``)."""
