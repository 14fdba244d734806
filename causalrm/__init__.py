"""CausalRM Workbench: unbiased reward models from noisy, selection-biased user feedback."""

__version__ = "0.1.0"
