"""tsubame's command-line client: talks to a tsubame server over its public API only."""
