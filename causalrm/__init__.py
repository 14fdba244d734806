"""CausalRM Workbench: unbiased reward models from noisy, selection-biased user feedback."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy re-exports, so ``import causalrm`` stays light (no torch until needed)."""
    if name == "load_reward_model":
        from causalrm.export import load_reward_model

        return load_reward_model
    raise AttributeError(f"module 'causalrm' has no attribute {name!r}")
