"""Exported reward models: Hugging Face folders, loading, TRL reward functions, model cards."""
