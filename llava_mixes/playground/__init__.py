"""The playground stage."""
