"""unfolding: see ARCHITECTURE.md; the model family lands with its issue."""
