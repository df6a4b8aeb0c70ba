"""Heads, one module each: what a network predicts per action, and its TD loss (parts.Head)."""
