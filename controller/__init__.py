"""Governor: autoscaling and cost-optimisation controller for Hugging Face Inference Endpoints."""

__version__ = "0.1.0"
__all__ = ["__version__"]
