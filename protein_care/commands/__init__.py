"""Subcommands of the protein-care CLI, one module each."""
