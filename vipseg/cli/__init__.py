"""Command-line interface: argument parsing only; work is done in data/, models/, engine/."""
