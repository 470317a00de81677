"""The embedding stage."""
