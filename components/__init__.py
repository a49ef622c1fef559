"""Component logic: Transform/Trainer module files and model definitions per branch."""
