"""Loss terms, one module each: what one update minimises, composed (parts.LossTerm)."""
