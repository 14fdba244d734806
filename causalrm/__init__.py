"""CausalRM Workbench: unbiased reward models from noisy, selection-biased user feedback."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy re-exports, so ``import causalrm`` stays light (no torch until needed)."""
    if name == "load_reward_model":
        from causalrm.export.loading import load_reward_model

        return load_reward_model
    if name == "CausalRM":
        from causalrm.estimator import CausalRM

        return CausalRM
    if name == "FitConfig":
        from causalrm.config import FitConfig

        return FitConfig
    if name == "fit_methods":
        from causalrm.workflows.orchestrate import fit_methods

        return fit_methods
    raise AttributeError(f"module 'causalrm' has no attribute {name!r}")


__all__ = ["CausalRM", "FitConfig", "__version__", "fit_methods", "load_reward_model"]
