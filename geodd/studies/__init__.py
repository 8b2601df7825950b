"""One module per notebook: its typed settings, cache names and tables."""
