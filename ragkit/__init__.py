"""ragkit: RAG vs long-context experiments under compute budgets."""

__version__ = "0.1.0"
