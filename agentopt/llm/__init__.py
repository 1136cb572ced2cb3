"""LLM layer: one client over litellm for every provider, with retries, cost, cache and budget."""
