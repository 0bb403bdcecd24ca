"""LLM trainability maps: one GPT-2 training run per grid point (the llmmap workload)."""
