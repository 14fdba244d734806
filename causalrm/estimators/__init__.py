"""The estimators: the method registry, the loss kernel, the doubly robust and positive-unlabelled variants."""
