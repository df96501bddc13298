"""See the README in this folder."""
