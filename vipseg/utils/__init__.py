"""Small helpers shared by every layer (no torch model or dataset code here)."""
