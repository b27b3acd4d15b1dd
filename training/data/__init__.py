"""Training data: studies in memory, folds, coronal-slice batches, 3D patches."""
